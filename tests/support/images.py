"""A real image server on 127.0.0.1 for the vision tests: photos, and redirects to addresses that must be refused."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import numpy as np
from PIL import Image

from tests.support.http_server import static_server


def photo(height: int = 80, width: int = 120, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A noisy RGB picture (random pixels, so that no two sizes or seeds give the same features)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(fmt: str = "JPEG", height: int = 80, width: int = 120, seed: int = 0) -> str:
    """``photo`` as a data: URL."""
    kind = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{kind};base64,{base64.b64encode(photo(height, width, fmt, seed)).decode()}"


# the inference service's environment for tests that fetch from this server: its loopback address allow-listed
ALLOW_LOCAL_IMAGES = {"INFERENCE_IMAGE_ALLOW_HOSTS": "127.0.0.1"}
FILES = {"/photo.jpg": (photo(), "image/jpeg"), "/photo.png": (photo(fmt="PNG", seed=1), "image/png")}
REDIRECTS = {"/to-private": "http://10.0.0.1/photo.jpg", "/to-metadata": "http://169.254.169.254/latest/meta-data"}


@contextmanager
def image_server() -> Iterator[ThreadingHTTPServer]:
    """Serves ``FILES`` and ``REDIRECTS``; ``server.url`` is its root, ``server.requests`` the paths asked for."""
    with static_server(FILES, REDIRECTS) as server:
        yield server
