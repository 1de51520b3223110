"""Many vision requests at once, their images fetched over http: the service's memory and time with the bound
on fetched bytes held across requests (``INFERENCE_IMAGE_HELD_BYTES``, ``inference/server/held_bytes.py``) at
its default, at a quarter of it, and with no bound (1 TiB: what the service did before, and what a server that
fetches every request's images as they come does), alternating, in one run.

    .venv/bin/python benchmarks/bench_image_fetch.py [--rounds 3] [--requests 30] [--images 8]

Each measure runs in a fresh process: ``--requests`` requests of ``--images`` http images each go through
``load_images`` at once (fetched from a local server, decoded and preprocessed on the service's pool of 2
threads) for the tiny LLaVA-1.5 the tests write. Images: a 2000x1500 JPEG of noise at quality 98 (4.7 MB: a
large photo's size). Reported: the peak resident memory above the set-up (VmHWM, reset through
/proc/self/clear_refs) and the wall time, medians over the rounds.
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
import asyncio, io, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
import numpy as np
from PIL import Image
from inference.models.vision_config import LlavaConfig
from inference.multimodal.fetch import FetchPolicy
from inference.multimodal.processor import ImageProcessor
from inference.server import vision

path, requests, images, held = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
buf = io.BytesIO()
noise = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
Image.fromarray(noise).save(buf, "JPEG", quality=98)
BODY = buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
hf = json.loads((path / "config.json").read_text())
model = SimpleNamespace(vision=SimpleNamespace(processor=ImageProcessor.from_dir(path, LlavaConfig.from_hf(hf))))
# a long timeout: with no bound, hundreds of fetches at once can take longer than the default 10 s
policy = FetchPolicy(allow_hosts=("127.0.0.1",), held_bytes=held, timeout=600)


def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":"))) / 1024


async def send(n, k):
    batches = [[(url, f"messages[{r}].content[{i}]") for i in range(k)] for r in range(n)]
    return await asyncio.gather(*(vision.load_images(b, model, policy) for b in batches))


asyncio.run(send(1, 1))  # the pool, Pillow's plugins and the http client, before the measure
del noise
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
base, start = status("VmRSS"), time.perf_counter()
out = asyncio.run(send(requests, images))
seconds = time.perf_counter() - start
assert len(out) == requests and all(len(r) == images for r in out)
print(json.dumps({"peak_mb": status("VmHWM") - base, "seconds": seconds, "jpeg_mb": len(BODY) / 1e6}))
"""

BOUNDS = {"no bound (1 TiB)": 1 << 40, "default (1 GiB)": 1 << 30, "256 MiB": 1 << 28}


def _measure(checkpoint: Path, requests: int, images: int, held: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint), str(requests), str(images), str(held)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    from tests.support.checkpoints import llava_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = llava_checkpoint(Path(tmp) / "llava")
        runs: dict[str, list[dict]] = {name: [] for name in BOUNDS}
        for _ in range(args.rounds):
            for name, held in BOUNDS.items():  # alternating: a busy core slows each alike
                runs[name].append(_measure(checkpoint, args.requests, args.images, held))
    jpeg = runs[next(iter(BOUNDS))][0]["jpeg_mb"]
    print(f"{args.requests} requests of {args.images} http images ({jpeg:.1f} MB JPEGs, 3 Mpx) at once, "
          f"medians of {args.rounds}:")  # fmt: skip
    print("| INFERENCE_IMAGE_HELD_BYTES | peak memory | wall time |\n|---|---|---|")
    for name, measures in runs.items():
        peak = statistics.median(m["peak_mb"] for m in measures)
        seconds = statistics.median(m["seconds"] for m in measures)
        print(f"| {name} | {peak:,.0f} MB | {seconds:.1f} s |")
    print(f"command: .venv/bin/python benchmarks/bench_image_fetch.py --rounds {args.rounds} "
          f"--requests {args.requests} --images {args.images}")  # fmt: skip


if __name__ == "__main__":
    main()
