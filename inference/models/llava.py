"""LLaVA-1.5 (``LlavaForConditionalGeneration``) and LLaVA-NeXT / 1.6 (``LlavaNextForConditionalGeneration``).

A CLIP vision tower turns each image tile into patch features (an inner layer's hidden states, CLS dropped);
a two-layer MLP projects them into the language model's embedding space; those vectors replace the image
tokens of the prompt, and a Llama / Mistral (Vicuna is Llama) decoder reads the whole sequence as usual.
NeXT tiles an image at the best of its ``image_grid_pinpoints`` resolutions, encodes the tiles plus a
downscaled view of the whole image, lays the tile features out on their 2-D grid, crops the padding the
resize added, and ends each row with a learned ``image_newline`` vector.

The engine sees a decoder (``config`` is the text config; ``attention_layers`` are the decoder's, the only
ones with a KV cache) plus ``embed_tokens`` / ``encode_images`` for prompts with images.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from inference.layers.activation import Activation
from inference.layers.attention import Attention
from inference.layers.linear import load_hf_weights
from inference.models.anyres import best_resolution, unpadded_shape
from inference.models.clip import PACKED_MODULES as CLIP_PACKED
from inference.models.clip import CLIPVisionModel
from inference.models.inputs import ImageInput
from inference.models.llama import PACKED_MODULES as LLAMA_PACKED
from inference.models.llama import LlamaForCausalLM
from inference.models.vision_config import ConfigError, LlavaConfig

# checkpoint layouts -> ours: llava-hf's (``vision_tower.vision_model.*``, ``language_model.model.*``) and
# transformers v5's in-memory one (``model.vision_tower.*``, ``model.language_model.*``, ``lm_head``)
_RENAMES = (
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model.model."),
    ("model.image_newline", "image_newline"),
    ("lm_head.", "language_model.lm_head."),
)
_NON_PARAMETERS = ("position_ids", "rotary_emb.inv_freq")


def _rename(name: str) -> str:
    for theirs, ours in _RENAMES:
        if name.startswith(theirs):
            name = ours + name[len(theirs) :]
            break
    return name.replace("vision_tower.vision_model.", "vision_tower.", 1)


class LlavaMultiModalProjector(nn.Module):
    def __init__(self, config: LlavaConfig):
        super().__init__()
        in_features = config.vision.hidden_size * len(config.vision_feature_layers)
        hidden = config.text.hidden_size
        self.linear_1 = nn.Linear(in_features, hidden, bias=config.projector_bias)
        self.act = Activation(config.projector_hidden_act)
        self.linear_2 = nn.Linear(hidden, hidden, bias=config.projector_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaForConditionalGeneration(nn.Module):
    config_class = LlavaConfig

    def __init__(self, config: LlavaConfig):
        super().__init__()
        if config.is_next and config.feature_strategy != "default":
            raise ConfigError("LLaVA-NeXT with vision_feature_select_strategy 'full' is not supported")
        self.llava_config = config
        self.config = config.text  # what the engine reads: the decoder's shape and context
        self.image_token_id = config.image_token_id
        self.vision_tower = CLIPVisionModel(config.vision)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = LlamaForCausalLM(config.text)
        self.image_newline = nn.Parameter(torch.empty(config.text.hidden_size)) if config.is_next else None

    # --- the decoder ---------------------------------------------------------------------------------

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.language_model(input_ids, positions, inputs_embeds)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.language_model.compute_logits(hidden)

    def attention_layers(self) -> list[Attention]:
        return self.language_model.attention_layers()

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[T] -> [T, hidden]; image tokens get a placeholder row (their id may lie past the vocabulary)."""
        ids = input_ids.masked_fill(input_ids == self.image_token_id, 0)
        return self.language_model.model.embed_tokens(ids)

    # --- images --------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_images(self, images: list[ImageInput]) -> torch.Tensor:
        """The images' feature vectors in prompt order: [sum(num_tokens), hidden] in the decoder's dtype."""
        cfg = self.llava_config
        device = self.vision_tower.embeddings.class_embedding.device
        pixels = torch.cat([image.pixels for image in images]).to(device)  # every tile of every image
        states = self.vision_tower.hidden_states(pixels, cfg.feature_layer_indices)
        features = torch.cat(states, dim=-1)  # [tiles, 1 + grid**2, D * layers]
        if cfg.feature_strategy == "default":
            features = features[:, 1:]
        features = self.multi_modal_projector(features)  # [tiles, patches, hidden]
        out, first = [], 0
        for image in images:
            tiles = features[first : first + image.pixels.shape[0]]
            first += image.pixels.shape[0]
            packed = self._pack_next(tiles, image.size) if cfg.is_next else tiles.flatten(0, 1)
            if packed.shape[0] != image.num_tokens:
                raise ValueError(f"image of {image.size} gave {packed.shape[0]} features for {image.num_tokens} tokens")
            out.append(packed)
        return torch.cat(out)

    def _pack_next(self, tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """tiles [1 + rows*cols, grid**2, H] (the whole-image view first) -> [tokens, H]: the view's features,
        then the tiles' features on their 2-D grid, cropped to the image and each row closed by a newline."""
        cfg = self.llava_config
        grid, tile = cfg.vision.grid, cfg.vision.image_size
        best_h, best_w = best_resolution(size, cfg.image_grid_pinpoints)
        rows, cols = best_h // tile, best_w // tile
        hidden = tiles.shape[-1]
        grid_features = (
            tiles[1:]
            .view(rows, cols, grid, grid, hidden)
            .permute(0, 2, 1, 3, 4)
            .reshape(rows * grid, cols * grid, hidden)
        )  # [rows*grid, cols*grid, H]: tile (r, c)'s patch (i, j) at (r*grid + i, c*grid + j)
        top, bottom, left, right = unpadded_shape(size, rows * grid, cols * grid)
        grid_features = grid_features[top:bottom, left:right]
        newline = self.image_newline.to(grid_features.dtype).expand(grid_features.shape[0], 1, hidden)
        return torch.cat([tiles[0], torch.cat([grid_features, newline], dim=1).flatten(0, 1)])

    # --- weights -------------------------------------------------------------------------------------

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        tied = self.language_model.lm_head is None

        def skip(name: str) -> bool:
            return name.endswith(_NON_PARAMETERS) or (tied and name == "language_model.lm_head.weight")

        load_hf_weights(self, weights, {**LLAMA_PACKED, **CLIP_PACKED}, skip=skip, rename=_rename)


class LlavaNextForConditionalGeneration(LlavaForConditionalGeneration):
    """The same model; its config carries ``image_grid_pinpoints`` (checked to be there)."""

    def __init__(self, config: LlavaConfig):
        if not config.is_next:
            raise ConfigError("LlavaNextForConditionalGeneration needs image_grid_pinpoints in its config")
        super().__init__(config)
