"""The images of a chat request to a vision model: fetched (safely, concurrently) and preprocessed off the event
loop, ready for the prompt (``prompt.py`` places their tokens)."""

from __future__ import annotations

import asyncio

from inference.errors import RequestError
from inference.multimodal.fetch import FetchPolicy, ImageFetchError, load_image
from inference.server.limits import MAX_IMAGES
from inference.server.registry import LoadedModel

# How many times the decoded-image limit (INFERENCE_IMAGE_MAX_PIXELS) an image made while preprocessing may hold:
# room for a 48-megapixel photo padded to a square, none for a sliver that pads to gigabytes.
WORK_FACTOR = 4


async def _load(url: str, param: str, policy: FetchPolicy):
    try:
        return await load_image(url, policy)
    except ImageFetchError as exc:
        raise RequestError(f"{param}: {exc}", param=param, code="invalid_image_url") from None


async def load_images(images: list[tuple[str, str]], model: LoadedModel, policy: FetchPolicy) -> list:
    """``images``: (url, its param) in prompt order → the model's processed inputs, in that order."""
    if len(images) > MAX_IMAGES:
        raise RequestError(f"At most {MAX_IMAGES} images per request; this one has {len(images)}.", param="messages")
    results = await asyncio.gather(*(_load(url, param, policy) for url, param in images), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    processor = model.vision.processor
    for image, (_, param) in zip(results, images, strict=True):
        work = processor.work_pixels((image.height, image.width))
        if work > WORK_FACTOR * policy.max_pixels:
            raise RequestError(
                f"{param}: image is {image.width}x{image.height}; this model's preprocessing (a square pad, or its "
                f"short side scaled up) would make a {work}-pixel image, more than {WORK_FACTOR} x the limit of "
                f"{policy.max_pixels} pixels. Crop it to a less elongated shape.",
                param=param, code="invalid_image_url",
            )  # fmt: skip
    return await asyncio.to_thread(lambda: [processor(image) for image in results])
