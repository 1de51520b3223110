"""The images of a chat request to a vision model: fetched (safely), preprocessed, placed in the prompt."""

from __future__ import annotations

import asyncio

from inference.multimodal.fetch import FetchPolicy, ImageFetchError, load_image
from inference.multimodal.inputs import MultiModalPrompt
from inference.multimodal.prompt import ImageMarkers, expand_image_tokens, flatten_images
from inference.server import chat_tools
from inference.server.errors import ServiceError
from inference.server.registry import LoadedModel

# LLaVA was trained on one image per conversation; a few more work, and every image costs up to ~2900 tokens
MAX_IMAGES = 8


async def _load(url: str, param: str, policy: FetchPolicy):
    try:
        return await load_image(url, policy)
    except ImageFetchError as exc:
        raise ServiceError(f"{param}: {exc}", param=param, code="invalid_image_url") from None


async def prompt(
    tools: chat_tools.ChatTools, model: LoadedModel, messages: list[dict], policy: FetchPolicy
) -> tuple[list[int], MultiModalPrompt | None]:
    """(prompt token ids with every image's tokens, the images) for ``messages`` whose contents may hold
    ``image_url`` parts; the images are fetched concurrently and preprocessed off the event loop."""
    markers = ImageMarkers.new()
    flat, images = flatten_images(messages, markers)
    if not images:
        return chat_tools.prompt(tools, model, messages), None
    if len(images) > MAX_IMAGES:
        raise ServiceError(f"At most {MAX_IMAGES} images per request; this one has {len(images)}.", param="messages")
    results = await asyncio.gather(*(_load(url, param, policy) for url, param in images), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    inputs = await asyncio.to_thread(lambda: [model.vision.processor(image) for image in results])
    ids = chat_tools.prompt(tools, model, flat, markers)
    try:
        return expand_image_tokens(ids, model.vision.image_token_id, inputs)
    except ValueError as exc:  # the template dropped or repeated an image
        raise ServiceError(f"The chat template did not place every image once: {exc}.", param="messages") from None
