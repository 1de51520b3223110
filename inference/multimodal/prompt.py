"""Where the images go in a chat prompt, and how many tokens each takes.

A message's image parts become unguessable markers in its text (images first, then the text, as LLaVA was
trained and as vLLM does for string templates), so that the tool-prompt code sees plain strings. At render
time the markers become the image token: either the template places images itself (llava-hf templates
iterate over ``{"type": "image"}`` parts: ``parts`` format) or it only knows strings and the marker is
swapped for the token (``string`` format). Each image token is then expanded to the image's feature count.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import torch

from inference.models.inputs import ImageInput, MultiModalPrompt


@dataclass
class ImageMarkers:
    """The markers of one request: ``marker(k)`` stands for its k-th image."""

    nonce: str

    @classmethod
    def new(cls) -> ImageMarkers:
        return cls(secrets.token_hex(8))

    def marker(self, k: int) -> str:
        return f"\ue002{self.nonce}:{k}\ue003"

    def pattern(self) -> re.Pattern:
        return re.compile(f"\ue002{self.nonce}:\\d+\ue003")


def flatten_images(messages: list[dict], markers: ImageMarkers) -> tuple[list[dict], list[tuple[str, str]]]:
    """Messages with image parts as strings with markers, and the images as (url, param) in prompt order."""
    images: list[tuple[str, str]] = []
    out = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list):
            marks, texts = [], []
            for j, part in enumerate(content):
                if part["type"] == "image_url":
                    marks.append(markers.marker(len(images)))
                    images.append((part["url"], f"messages[{i}].content[{j}].image_url"))
                else:
                    texts.append(part["text"])
            message = {**message, "content": "\n".join([*marks, "\n".join(texts)] if texts else marks)}
        out.append(message)
    return out, images


def split_markers(messages: list[dict], markers: ImageMarkers) -> list[dict]:
    """For ``parts`` templates: every content as parts, each marker an ``{"type": "image"}`` part."""
    pattern = markers.pattern()
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and pattern.search(content):
            parts: list[dict] = []
            for piece in re.split(f"({pattern.pattern})", content):
                if pattern.fullmatch(piece):
                    parts.append({"type": "image"})
                elif piece.strip("\n"):
                    parts.append({"type": "text", "text": piece.strip("\n")})
            message = {**message, "content": parts}
        out.append(message)
    return out


def detect_content_format(tokenizer, image_token: str) -> str:
    """ "parts" when the chat template renders an image part as the image token (and still shows the text),
    else "string"."""
    probe = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "probe"}]}]
    try:
        text = tokenizer.render_chat(probe, add_generation_prompt=True, parts=True)
    except Exception:  # noqa: BLE001 - a template that cannot take parts takes strings
        return "string"
    return "parts" if image_token in text and "probe" in text else "string"


def expand_image_tokens(
    ids: list[int], image_token_id: int, images: list[ImageInput]
) -> tuple[list[int], MultiModalPrompt]:
    """One image token per image in ``ids`` -> ``num_tokens`` of them each, and where they are."""
    found = [p for p, t in enumerate(ids) if t == image_token_id]
    if len(found) != len(images):
        raise ValueError(f"the prompt has {len(found)} image tokens for {len(images)} images")
    out: list[int] = []
    positions: list[int] = []
    last = 0
    for p, image in zip(found, images, strict=True):
        out += ids[last:p]
        positions += range(len(out), len(out) + image.num_tokens)
        out += [image_token_id] * image.num_tokens
        last = p + 1
    out += ids[last:]
    return out, MultiModalPrompt(images=images, positions=torch.tensor(positions, dtype=torch.long))
