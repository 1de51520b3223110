"""What a vision request's images cost in memory: the images are checked from their headers, then decoded and
preprocessed one at a time on a pool the service's requests share (``inference/server/vision.py``), so the
peak does not grow with the number of images in a request or of requests at once.

Measured in a fresh process: its peak resident memory (VmHWM, reset through /proc/self/clear_refs after the
set-up) while three requests of four 12-megapixel PNGs (a few kB each: one colour) go through ``load_images``
at once, for a tiny LLaVA-1.5 (pad to a square: 16 Mpx), on a pool of one thread. Measured here: 108 MB for
one image alone, 122 MB for the three requests. Before, each request decoded all its images at once, and the
requests ran side by side: 198 MB for one image (Pillow and numpy copies of the pixels since removed from
the processor), 1,043 MB for two requests of six."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.checkpoints import llava_checkpoint

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, base64, io, json, sys
from pathlib import Path
from types import SimpleNamespace
from PIL import Image
from inference.models.vision_config import LlavaConfig
from inference.multimodal.fetch import FetchPolicy
from inference.multimodal.processor import ImageProcessor
from inference.server.vision import load_images

path, requests, images, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hf = json.loads((path / "config.json").read_text())
model = SimpleNamespace(vision=SimpleNamespace(processor=ImageProcessor.from_dir(path, LlavaConfig.from_hf(hf))))
policy = FetchPolicy(workers=workers)


def png(width, height, seed):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed * 40 % 256, 90, 200)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":"))) / 1024


async def send(urls):
    batches = [[(u, f"messages[{r}].content[{i}]") for i, u in enumerate(urls)] for r in range(requests)]
    return await asyncio.gather(*(load_images(b, model, policy) for b in batches))


asyncio.run(send([png(40, 30, 0)]))  # the thread pool and Pillow's plugins, before the measure
urls = [png(4000, 3000, seed) for seed in range(images)]
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
base = status("VmRSS")
out = asyncio.run(send(urls))
assert len(out) == requests and all(len(r) == images for r in out)
print(json.dumps({"peak_mb": status("VmHWM") - base}))
"""


def _peak_mb(checkpoint: Path, requests: int, images: int, workers: int = 1) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(checkpoint), str(requests), str(images), str(workers)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def test_images_are_decoded_one_at_a_time_within_the_pool(tmp_path):
    checkpoint = llava_checkpoint(tmp_path / "llava")
    one = _peak_mb(checkpoint, requests=1, images=1)
    many = _peak_mb(checkpoint, requests=3, images=4)
    # one image's decoded pixels and its padded square (4 + 3 bytes a pixel) are most of its peak; a request that
    # held its four images at once, or three requests side by side, would need about 3 times as much or more
    assert one > 40, f"the measure saw {one:.0f} MB for one 12-megapixel image"
    assert many < 2 * one, f"three requests of four images peaked at {many:.0f} MB; one image alone at {one:.0f} MB"
