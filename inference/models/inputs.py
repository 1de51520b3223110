"""What a prompt with images carries through the engine: preprocessed tiles and where their tokens sit."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageInput:
    pixels: torch.Tensor  # [tiles, C, S, S] float32, normalised (LLaVA-1.5: one tile; NeXT: the base view + tiles)
    size: tuple[int, int]  # (height, width) of the image as sent: NeXT unpads its features to this aspect
    num_tokens: int  # image tokens it takes in the prompt (its feature vectors)


@dataclass
class MultiModalPrompt:
    """The images of one prompt; shared by the ``n`` sequences of a request, so the tower runs once."""

    images: list[ImageInput]
    positions: torch.Tensor  # [sum(num_tokens)] int64: the prompt indices of the image tokens, ascending
    embeds: torch.Tensor | None = None  # [sum(num_tokens), hidden] once encoded

    def __post_init__(self) -> None:
        if self.positions.numel() != sum(image.num_tokens for image in self.images):
            raise ValueError("image token positions do not match the images' token counts")

    def rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For prompt positions [start, end): (offsets into that chunk, rows of ``embeds``) of the image tokens."""
        lo = int(torch.searchsorted(self.positions, start))
        hi = int(torch.searchsorted(self.positions, end))
        return self.positions[lo:hi] - start, torch.arange(lo, hi)

    def content_key(self) -> str:
        """A digest of the images' pixels and sizes: the prefix cache keys a vision prompt's blocks with it."""
        if getattr(self, "_content_key", None) is None:
            import hashlib

            digest = hashlib.sha256()
            for image in self.images:
                digest.update(repr((tuple(image.pixels.shape), image.size, image.num_tokens)).encode())
                digest.update(image.pixels.detach().cpu().contiguous().numpy().tobytes())
            self._content_key = digest.hexdigest()
        return self._content_key

    @property
    def last_position(self) -> int:
        return int(self.positions[-1]) if self.positions.numel() else -1
