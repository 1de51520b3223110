"""A vision request's images on this CPU: our preprocessing as the service runs it (``load_images``: headers
checked, then decoded and processed one at a time on the service's image pool) against transformers' own PIL
image processor (``LlavaImageProcessorPil`` / ``LlavaNextImageProcessorPil``, what an HF-based server runs:
every image of the request decoded, then the processor called on the list), same images, same run, alternating.

    .venv/bin/python benchmarks/bench_images.py [--rounds 3] [--images 8] [--megapixels 12] [--requests 3]

Each measure runs in a fresh process and reports its peak resident memory above the set-up (VmHWM, reset
through /proc/self/clear_refs) and its wall time, median over the rounds. Images: PNGs of 4:3 gradients (a
few hundred kB each). Models: the tiny LLaVA-1.5 (pad to a square, then resize) and LLaVA-NeXT (any-resolution
tiles) the tests write; preprocessing does not depend on the weights, only on the processor config and the tile
size (32 px here; 336 in llava-hf's checkpoints, which changes only the small tiles at the end).
Both sides' pixels are the same to 1e-6 (tests/inference/test_llava.py). ``--requests``: ours also with that
many requests at once, each of all the images (the peer has no service; its figure would be that many times its
one-request peak, or its images decoded at once in as many threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import asyncio, base64, json, sys, time
from pathlib import Path
side, path, paths, requests = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
blobs = [Path(p).read_bytes() for p in paths]


def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":"))) / 1024


if side == "ours":
    from types import SimpleNamespace
    from inference.models.vision_config import LlavaConfig
    from inference.multimodal.fetch import FetchPolicy
    from inference.multimodal.processor import ImageProcessor
    from inference.server.vision import load_images

    hf = json.loads((path / "config.json").read_text())
    model = SimpleNamespace(vision=SimpleNamespace(processor=ImageProcessor.from_dir(path, LlavaConfig.from_hf(hf))))
    urls = ["data:image/png;base64," + base64.b64encode(b).decode() for b in blobs]

    async def send(urls, requests):
        one = [(u, f"messages[0].content[{i}]") for i, u in enumerate(urls)]
        return await asyncio.gather(*(load_images(one, model, FetchPolicy()) for _ in range(requests)))

    run = lambda: asyncio.run(send(urls, requests))  # noqa: E731
    asyncio.run(send(urls[:1], 1))  # the pool and Pillow's plugins, before the measure
else:
    import io
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(path)

    def run():
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
        return processor(images=images, return_tensors="pt")["pixel_values"]

    processor(images=[Image.open(io.BytesIO(blobs[0])).convert("RGB").resize((64, 48))], return_tensors="pt")
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
start = time.perf_counter()
run()
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": status("VmHWM") - base}))
"""


def _images(directory: Path, count: int, megapixels: float) -> list[Path]:
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = width * 3 // 4
    y, x = np.mgrid[0:height, 0:width].astype(np.uint16)
    paths = []
    for i in range(count):
        pixels = np.stack([(x + 17 * i) % 256, y % 256, (x // 7 + y // 5 + i) % 256], -1).astype(np.uint8)
        paths.append(directory / f"image{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _measure(side: str, checkpoint: Path, images: list[Path], requests: int) -> dict:
    command = [sys.executable, "-c", CHILD, side, str(checkpoint), ",".join(map(str, images)), str(requests)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    from tests.support.checkpoints import llava_checkpoint

    root = Path(tempfile.mkdtemp(prefix="bench-images-"))
    images = _images(root, args.images, args.megapixels)
    kb = sum(p.stat().st_size for p in images) / 1024
    print(f"{args.images} PNGs of {args.megapixels:g} Mpx ({kb:.0f} kB in all); {args.rounds} rounds, medians")
    runs = [("ours", 1), ("transformers", 1)] + ([("ours", args.requests)] if args.requests > 1 else [])
    for name, next_ in (("LLaVA-1.5", False), ("LLaVA-NeXT", True)):
        checkpoint = llava_checkpoint(root / name, next_=next_)
        figures: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
        for _ in range(args.rounds):
            for side, requests in runs:  # alternating: a busy core slows every side in turn
                figures[(side, requests)].append(_measure(side, checkpoint, images, requests))
        for (side, requests), results in figures.items():
            peak = statistics.median(r["peak_mb"] for r in results)
            seconds = statistics.median(r["seconds"] for r in results)
            what = f"{requests} requests at once" if requests > 1 else "one request"
            print(f"{name:10s} {side:12s} {what:20s} peak {peak:6.0f} MB above the set-up, {seconds:6.2f} s")
    print(f"command: .venv/bin/python benchmarks/bench_images.py --rounds {args.rounds} --images {args.images} "
          f"--megapixels {args.megapixels:g} --requests {args.requests}")  # fmt: skip


if __name__ == "__main__":
    main()
