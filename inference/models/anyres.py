"""LLaVA-NeXT's any-resolution geometry: the grid resolution an image is tiled at, and the part of the tiles'
feature grid that shows the image. The model (``llava.py``) and the image preprocessing
(``inference/multimodal/processor.py``, which counts the image's tokens) both follow it, so they agree on every token.
"""

from __future__ import annotations


def best_resolution(size: tuple[int, int], pinpoints: list[tuple[int, int]]) -> tuple[int, int]:
    """(height, width) of the pinpoint that keeps most of the image's pixels, then wastes the least
    (transformers' ``select_best_resolution``, which the checkpoints were trained with)."""
    height, width = size
    best, most, least = pinpoints[0], -1, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = w * h - effective
        if effective > most or (effective == most and wasted < least):
            best, most, least = (h, w), effective, wasted
    return best


def unpadded_shape(size: tuple[int, int], rows: int, cols: int) -> tuple[int, int, int, int]:
    """A (rows x cols) feature grid of an image of ``size`` padded to the grid's aspect: (top, bottom, left,
    right) of the part that shows the image. Rounding as transformers' ``unpad_image``."""
    height, width = size
    if width / height > cols / rows:
        new_rows = int(round(height * (cols / width), 7))
        pad = (rows - new_rows) // 2
        return pad, rows - pad, 0, cols
    new_cols = int(round(width * (rows / height), 7))
    pad = (cols - new_cols) // 2
    return 0, rows, pad, cols - pad
