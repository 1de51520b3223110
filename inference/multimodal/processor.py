"""Image preprocessing from the checkpoint's own processor config, with Pillow and numpy (no torchvision).

Reads ``preprocessor_config.json`` (llava-hf checkpoints) or the ``image_processor`` part of
``processor_config.json`` (transformers v5) plus the processor's ``patch_size`` / feature strategy, and does
what transformers' PIL image processors do, step for step, so that the tiles match the ones the model was
trained on: convert to RGB, (LLaVA-1.5 ``do_pad``: pad to a square of the mean colour), resize (bicubic,
shortest edge), centre-crop, rescale to [0, 1], normalise. LLaVA-NeXT first picks the best of its grid
resolutions, resizes the image into it keeping the aspect ratio, pads it centred, cuts it into tiles, and
puts a squashed view of the whole image in front.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference.models.anyres import best_resolution, unpadded_shape
from inference.models.inputs import ImageInput
from inference.models.vision_config import LlavaConfig

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ProcessorConfigError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class ImageProcessorConfig:
    size: dict[str, int] = field(default_factory=lambda: {"shortest_edge": 336})
    crop_size: dict[str, int] = field(default_factory=lambda: {"height": 336, "width": 336})
    do_resize: bool = True
    do_center_crop: bool = True
    do_pad: bool = False  # LLaVA-1.5 processors: pad to a square first
    do_rescale: bool = True
    do_normalize: bool = True
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = _CLIP_MEAN
    image_std: tuple[float, float, float] = _CLIP_STD
    resample: int = 3  # PIL's BICUBIC
    num_additional_image_tokens: int = 1  # the CLS position the processor counts (and "default" drops)

    def __post_init__(self) -> None:
        if not ("shortest_edge" in self.size or {"height", "width"} <= set(self.size)):
            raise ProcessorConfigError(f"image processor size {self.size} needs shortest_edge or height and width")
        if self.do_center_crop and not {"height", "width"} <= set(self.crop_size or {}):
            raise ProcessorConfigError(f"image processor crop_size {self.crop_size} needs height and width")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ProcessorConfigError("image_mean and image_std need three values (std > 0)")

    @classmethod
    def from_dir(cls, directory: Path) -> ImageProcessorConfig:
        directory = Path(directory)
        raw: dict[str, Any] = {}
        processor = _read(directory / "processor_config.json")
        if (directory / "preprocessor_config.json").is_file():
            raw = _read(directory / "preprocessor_config.json")
        elif isinstance(processor.get("image_processor"), dict):
            raw = processor["image_processor"]
        else:
            raise ProcessorConfigError(f"{directory} has no preprocessor_config.json (the image processor's config)")

        def triple(key: str, default: tuple) -> tuple:
            value = raw.get(key, default)
            return tuple(value) if isinstance(value, list) else (value,) * 3

        size = raw.get("size", {"shortest_edge": 336})
        return cls(
            size=size if isinstance(size, dict) else {"shortest_edge": int(size)},
            crop_size=raw.get("crop_size") or {},
            do_resize=raw.get("do_resize", True),
            do_center_crop=raw.get("do_center_crop", True),
            do_pad=bool(raw.get("do_pad", False)) and "image_grid_pinpoints" not in raw,
            do_rescale=raw.get("do_rescale", True),
            do_normalize=raw.get("do_normalize", True),
            rescale_factor=raw.get("rescale_factor", 1 / 255),
            image_mean=triple("image_mean", _CLIP_MEAN),
            image_std=triple("image_std", _CLIP_STD),
            resample=int(raw.get("resample", 3)),
            num_additional_image_tokens=int(processor.get("num_additional_image_tokens", 1)),
        )


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProcessorConfigError(f"cannot read {path}: {exc}") from None


# --- the steps, on channel-first uint8 / float32 arrays [C, H, W] --------------------------------------
# The whole image's steps (pad, first resize) take the RGB Pillow image itself: a copy of a large image into
# numpy and back into Pillow would hold two more full-size copies (about 7 bytes a pixel) for the same pixels.


def _chw(image: Image.Image) -> np.ndarray:
    return np.asarray(image).transpose(2, 0, 1)


def _resize(image: np.ndarray | Image.Image, height: int, width: int, resample: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        return _chw(image if image.size == (width, height) else image.resize((width, height), resample=resample))
    if image.shape[1:] == (height, width):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
    return _chw(pil.resize((width, height), resample=resample))


def _shortest_edge(shape: tuple[int, int], edge: int) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` (height, width) resized to ``edge`` on its short side."""
    height, width = shape
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def _center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[1:]
    if h < height or w < width:  # smaller than the crop: pad centred with zeros first
        padded = np.zeros((image.shape[0], max(h, height), max(w, width)), dtype=image.dtype)
        top, left = (padded.shape[1] - h) // 2, (padded.shape[2] - w) // 2
        padded[:, top : top + h, left : left + w] = image
        image, h, w = padded, padded.shape[1], padded.shape[2]
    top, left = (h - height) // 2, (w - width) // 2
    return image[:, top : top + height, left : left + width]


def _pad_to_square(image: Image.Image, color: tuple[int, ...]) -> Image.Image:
    """Centred on a square of ``color`` (transformers' ``expand_to_square``)."""
    w, h = image.size
    if h == w:
        return image
    side = max(h, w)
    out = Image.new("RGB", (side, side), color)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


class ImageProcessor:
    """PIL image -> ``ImageInput`` (normalised tiles and the number of image tokens it takes)."""

    def __init__(self, config: ImageProcessorConfig, model: LlavaConfig):
        self.config = config
        self.model = model
        self.tile = model.vision.image_size
        self.patch = model.vision.patch_size

    @classmethod
    def from_dir(cls, directory: Path, model: LlavaConfig) -> ImageProcessor:
        return cls(ImageProcessorConfig.from_dir(directory), model)

    def _finish(self, image: np.ndarray | Image.Image) -> np.ndarray:
        """resize, crop, rescale, normalise: one tile (or the whole 1.5 image) -> float32 [C, H, W]."""
        cfg = self.config
        shape = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[1:]
        if cfg.do_resize:
            if "shortest_edge" in cfg.size:
                image = _resize(image, *_shortest_edge(shape, cfg.size["shortest_edge"]), cfg.resample)
            else:
                image = _resize(image, cfg.size["height"], cfg.size["width"], cfg.resample)
        elif isinstance(image, Image.Image):
            image = _chw(image)
        if cfg.do_center_crop:
            image = _center_crop(image, cfg.crop_size["height"], cfg.crop_size["width"])
        # rescaled in float64 then cast, as transformers does (bit-identical pixels)
        scale = cfg.rescale_factor if cfg.do_rescale else 1.0
        out = (image.astype(np.float64) * scale).astype(np.float32)
        if cfg.do_normalize:
            mean = np.asarray(cfg.image_mean, dtype=np.float32)[:, None, None]
            std = np.asarray(cfg.image_std, dtype=np.float32)[:, None, None]
            out = (out - mean) / std
        return out

    def __call__(self, image: Image.Image) -> ImageInput:
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert copies even an RGB image
        size = (rgb.height, rgb.width)
        if self.model.is_next:
            tiles = [self._finish(t) for t in self._next_tiles(rgb)]
        else:
            if self.config.do_pad:
                rgb = _pad_to_square(rgb, tuple(int(m * 255) for m in self.config.image_mean))
            tiles = [self._finish(rgb)]
        pixels = torch.from_numpy(np.stack(tiles))
        if pixels.shape[-2:] != (self.tile, self.tile):
            raise ProcessorConfigError(
                f"the image processor makes {tuple(pixels.shape[-2:])} tiles; the vision tower takes {self.tile}"
            )
        return ImageInput(pixels=pixels, size=size, num_tokens=self.num_tokens(size))

    def _next_tiles(self, image: Image.Image) -> list[np.ndarray]:
        """The squashed whole image, then the tiles of the best grid resolution, row by row."""
        width, height = image.size
        best_h, best_w = best_resolution((height, width), self.model.image_grid_pinpoints)
        # resize into (best_h, best_w) keeping the aspect ratio (transformers' get_patch_output_size)
        scale_w, scale_h = best_w / width, best_h / height
        if scale_w < scale_h:
            new_w, new_h = best_w, min(int(np.ceil(height * scale_w)), best_h)
        else:
            new_h, new_w = best_h, min(int(np.ceil(width * scale_h)), best_w)
        resized = _resize(image, new_h, new_w, self.config.resample)
        top, left = (best_h - new_h) // 2, (best_w - new_w) // 2
        padded = np.zeros((3, best_h, best_w), dtype=np.uint8)
        padded[:, top : top + new_h, left : left + new_w] = resized
        tiles = [padded[:, i : i + self.tile, j : j + self.tile] for i in range(0, best_h, self.tile)
                 for j in range(0, best_w, self.tile)]  # fmt: skip
        edge = self.config.size.get("shortest_edge") or min(self.config.size["height"], self.config.size["width"])
        return [_resize(image, edge, edge, self.config.resample), *tiles]

    def work_pixels(self, size: tuple[int, int]) -> int:
        """The most pixels an image made while preprocessing an image of ``size`` (height, width) holds. LLaVA-1.5's
        square pad and a shortest-edge resize grow with the aspect ratio, not the image: a 2 x 16,000 image pads
        to 256 M pixels (768 MB, several copies of it in Pillow), so the caller bounds this before preprocessing.
        LLaVA-NeXT resizes into its grid resolutions and stays small."""
        height, width = size
        if self.model.is_next:
            best_h, best_w = best_resolution(size, self.model.image_grid_pinpoints)
            return max(height * width, best_h * best_w)
        if self.config.do_pad:
            height = width = max(height, width)
        work = height * width
        if self.config.do_resize and "shortest_edge" in self.config.size:
            new_h, new_w = _shortest_edge((height, width), self.config.size["shortest_edge"])
            work = max(work, new_h * new_w)
        return work

    def num_tokens(self, size: tuple[int, int]) -> int:
        """Image tokens an image of ``size`` (height, width) takes in the prompt."""
        grid = self.tile // self.patch
        drop = 1 if self.model.feature_strategy == "default" else 0
        base = grid * grid + self.config.num_additional_image_tokens - drop
        if not self.model.is_next:
            return base
        best_h, best_w = best_resolution(size, self.model.image_grid_pinpoints)
        top, bottom, left, right = unpadded_shape(size, best_h // self.tile * grid, best_w // self.tile * grid)
        rows, cols = bottom - top, right - left
        return base + rows * (cols + 1)  # every row of the grid ends with the newline vector
