"""The images of a chat request to a vision model: fetched (safely, concurrently), then decoded and preprocessed
off the event loop, one at a time, ready for the prompt (``prompt.py`` places their tokens).

A decoded image is large next to its bytes: a PNG of 150 kB can hold 30 Mpx, which take about 270 MB while
Pillow decodes it and the processor pads and resizes it. So the bytes are fetched concurrently, but each image
is checked from its header before any is decoded, and the images are then decoded and processed one after the
other on a pool of ``FetchPolicy.workers`` threads that all requests share: the service holds at most that
many decoded images at once, however many images a request carries and however many requests come at once.
The bytes fetched and waiting for that pool are bounded too, across requests (``held_bytes.py``).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from inference.errors import RequestError
from inference.multimodal.fetch import (
    FetchPolicy,
    ImageFetchError,
    fetch_image_bytes,
    most_bytes,
    open_image,
    to_rgb,
)
from inference.server.held_bytes import HeldBytes
from inference.server.limits import MAX_IMAGES
from inference.server.registry import LoadedModel

# How many times the decoded-image limit (FetchPolicy.max_pixels) an image made while preprocessing may hold:
# room for a 48-megapixel photo padded to a square, none for a sliver that pads to gigabytes.
WORK_FACTOR = 4


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="images")


def held_for(policy: FetchPolicy) -> HeldBytes:
    """The bound on fetched image bytes that all requests under ``policy`` share."""
    return _held(policy.held_bytes)


@functools.cache
def _held(capacity: int) -> HeldBytes:
    return HeldBytes(capacity)


def _refused(param: str, exc: ImageFetchError) -> RequestError:
    return RequestError(f"{param}: {exc}", param=param, code="invalid_image_url")


async def _fetch(url: str, param: str, policy: FetchPolicy) -> bytes:
    try:
        return await fetch_image_bytes(url, policy)
    except ImageFetchError as exc:
        raise _refused(param, exc) from None


def _prepare(blobs: list[bytes], params: list[str], processor, policy: FetchPolicy) -> list:
    """Check every image from its header, then decode and process them one by one (on a pool thread)."""
    opened = []
    for blob, param in zip(blobs, params, strict=True):
        try:
            image = open_image(blob, policy)
        except ImageFetchError as exc:
            raise _refused(param, exc) from None
        work = processor.work_pixels((image.height, image.width))
        if work > WORK_FACTOR * policy.max_pixels:
            raise RequestError(
                f"{param}: image is {image.width}x{image.height}; this model's preprocessing (a square pad, or its "
                f"short side scaled up) would make a {work}-pixel image, more than {WORK_FACTOR} x the limit of "
                f"{policy.max_pixels} pixels. Crop it to a less elongated shape.",
                param=param, code="invalid_image_url",
            )  # fmt: skip
        opened.append(image)
    # each image handed to the processor and kept by nothing else: its decoded pixels go when it returns
    return [processor(_decode(opened, i, param)) for i, param in enumerate(params)]


def _decode(opened: list, i: int, param: str):
    image, opened[i] = opened[i], None
    try:
        return to_rgb(image)
    except ImageFetchError as exc:
        raise _refused(param, exc) from None


async def load_images(images: list[tuple[str, str]], model: LoadedModel, policy: FetchPolicy) -> list:
    """``images``: (url, its param) in prompt order → the model's processed inputs, in that order."""
    if len(images) > MAX_IMAGES:
        raise RequestError(f"At most {MAX_IMAGES} images per request; this one has {len(images)}.", param="messages")
    # its share until fetched: each image's most bytes (an http one's limit), then what came
    held, share = held_for(policy), sum(most_bytes(url, policy) for url, _ in images)
    await held.take(share)
    try:
        results = await asyncio.gather(*(_fetch(u, p, policy) for u, p in images), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        held.resize(share, fetched := sum(len(blob) for blob in results))
    except BaseException:
        held.give_back(share)
        raise
    params = [param for _, param in images]
    work = _pool(policy.workers).submit(_prepare, results, params, model.vision.processor, policy)
    # given back when the pool is done with the bytes, not when the request is: a client gone meanwhile
    # cancels the work only if it has not started
    work.add_done_callback(lambda _: held.give_back(fetched))
    return await asyncio.wrap_future(work)
