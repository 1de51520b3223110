"""CLIP's vision transformer, as LLaVA uses it: the hidden states of chosen layers for a batch of image tiles.

Pre-LN encoder layers, bidirectional attention, QuickGELU MLP. Module names follow HF's ``CLIPVisionModel``
(``embeddings.*``, ``pre_layrnorm``, ``encoder.layers.N.*``) except that q/k/v are fused into
``self_attn.qkv_proj``. Attention, LayerNorm and the activation run on our Triton kernels when the engine
switches the model to them (CUDA); ``post_layernorm`` is loaded but unused (LLaVA reads inner layers).
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.activation import Activation
from inference.layers.attention import Attention
from inference.layers.context import ForwardContext, forward_context
from inference.layers.linear import MergedLinear
from inference.layers.norm import LayerNorm
from inference.models.vision_config import CLIPVisionConfig

PACKED_MODULES = {"q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v")}


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        dim = config.hidden_size
        self.class_embedding = nn.Parameter(torch.empty(dim))
        self.patch_embedding = nn.Conv2d(config.num_channels, dim, config.patch_size, config.patch_size, bias=False)
        self.position_embedding = nn.Embedding(config.grid**2 + 1, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, C, S, S] -> [N, 1 + grid**2, D]: CLS first, then the patches row by row."""
        patches = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class CLIPAttention(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        dim, heads = config.hidden_size, config.num_attention_heads
        self.qkv_proj = MergedLinear(dim, {"q": dim, "k": dim, "v": dim}, bias=True)
        self.out_proj = nn.Linear(dim, dim)
        self.attn = Attention(heads, heads, config.head_dim, scale=config.head_dim**-0.5, causal=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.attn(*self.qkv_proj.split(self.qkv_proj(x))))


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = Activation(config.hidden_act)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layer_norm1 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


class CLIPVisionModel(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic: HF's name
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def hidden_states(self, pixels: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
        """pixels [N, C, S, S] -> the hidden states ``indices`` name (0: the embeddings after ``pre_layrnorm``,
        i: after layer i), each [N, 1 + grid**2, D]. Layers past the deepest index are not run."""
        n, positions = pixels.shape[0], self.config.grid**2 + 1
        x = self.pre_layrnorm(self.embeddings(pixels).reshape(n * positions, -1))  # flat batch of N tiles
        wanted = {i: None for i in indices}
        if 0 in wanted:
            wanted[0] = x
        with forward_context(ForwardContext.for_prompts([positions] * n, causal=False)):
            for i, layer in enumerate(self.encoder.layers[: max(indices)], start=1):
                x = layer(x)
                if i in wanted:
                    wanted[i] = x
        return [wanted[i].view(n, positions, -1) for i in indices]
