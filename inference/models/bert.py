"""BERT encoder for sentence embeddings (all-MiniLM-L6-v2 and other sentence-transformers BERTs).

Absolute position + token type embeddings, post-LayerNorm encoder layers, exact (erf) GELU,
bidirectional attention. Module names follow HF's ``BertModel`` (``embeddings.*``,
``encoder.layer.N.*``) except that query/key/value are fused into ``attention.self.qkv_proj``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from inference.layers.activation import get_activation
from inference.layers.attention import Attention
from inference.layers.context import ForwardContext, forward_context
from inference.layers.linear import MergedLinear, load_hf_weights
from inference.layers.norm import LayerNorm
from inference.models.bert_config import BertConfig
from inference.models.pooling import Pooling, pool

PACKED_MODULES = {"query": ("qkv_proj", "q"), "key": ("qkv_proj", "k"), "value": ("qkv_proj", "v")}


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(positions))


class BertSelfAttention(nn.Module):
    """``alibi_slopes``: JinaBERT's position biases, one per head (it has no position embeddings)."""

    def __init__(self, config: BertConfig, alibi_slopes: list[float] | None = None):
        super().__init__()
        size = config.hidden_size
        self.qkv_proj = MergedLinear(size, {"q": size, "k": size, "v": size}, bias=True)
        heads = config.num_attention_heads
        self.attn = Attention(heads, heads, config.head_dim, scale=config.head_dim**-0.5, causal=False,
                              alibi_slopes=alibi_slopes)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(*self.qkv_proj.split(self.qkv_proj(x)))


class BertAddNorm(nn.Module):
    """Post-LN sublayer output: LayerNorm(residual + dense(x)) (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, in_features: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, alibi_slopes: list[float] | None = None):
        super().__init__()
        self.self = BertSelfAttention(config, alibi_slopes)  # `self.self`: the HF weight names say attention.self.*
        self.output = BertAddNorm(config.hidden_size, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertAddNorm(config.intermediate_size, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertModel(nn.Module):
    config_class = BertConfig

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Flat batch [T] (run under ``ForwardContext.for_prompts(lengths, causal=False)``) -> hidden [T, H]."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, positions, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x)
        return x

    default_pooling = Pooling("mean", normalize=True)  # all-MiniLM-L6-v2's pipeline, when the files do not say
    pooling: Pooling | None = None  # set by the loader from the checkpoint's sentence-transformers files

    def positions(self, lengths: list[int], device: torch.device) -> torch.Tensor:
        """Flat [T] position ids: 0..n-1 per sequence (XLM-R offsets them)."""
        return torch.cat([torch.arange(n, device=device) for n in lengths])

    @property
    def max_input_len(self) -> int:
        return self.config.max_position_embeddings

    @torch.inference_mode()
    def encode(
        self, input_ids_list: list[list[int]], token_type_ids_list: list[list[int]] | None = None
    ) -> torch.Tensor:
        """Token id lists -> last hidden states [T, H] of the flat batch, each sequence attending to itself.
        ``token_type_ids_list``: the segment of each token (a cross-encoder's query 0, document 1); default 0."""
        lengths = [len(ids) for ids in input_ids_list]
        if not lengths or min(lengths) == 0:
            raise ValueError("embed needs at least one sequence and no empty sequence")
        if max(lengths) > self.max_input_len:
            raise ValueError(f"sequence of {max(lengths)} tokens > {self.max_input_len} (max_position_embeddings)")
        device = self.embeddings.word_embeddings.weight.device
        input_ids = torch.tensor([t for ids in input_ids_list for t in ids], dtype=torch.long, device=device)
        token_types = None
        if token_type_ids_list is not None:
            if [len(t) for t in token_type_ids_list] != lengths:
                raise ValueError("token_type_ids_list must give one type per token")
            flat = [t for types in token_type_ids_list for t in types]
            # a one-type model (XLM-R) reads every segment as type 0, as its tokenizer's model inputs do
            token_types = torch.tensor(flat, dtype=torch.long, device=device).clamp_(0, self.config.type_vocab_size - 1)
        # roles: quantized layers run every row on their prefill weights, so a sequence's states follow no other's
        with forward_context(ForwardContext.for_prompts(lengths, causal=False, roles=True)):
            return self.forward(input_ids, self.positions(lengths, device), token_types)

    @torch.inference_mode()
    def embed(self, input_ids_list: list[list[int]]) -> torch.Tensor:
        """Token id lists -> [S, H] float32 sentence embeddings, pooled as the checkpoint says (default: mean over
        each sequence's tokens, L2-normalised: sentence-transformers' pipeline for all-MiniLM-L6-v2)."""
        lengths = [len(ids) for ids in input_ids_list]
        return pool(self.encode(input_ids_list), lengths, self.pooling or self.default_pooling)

    def attention_layers(self) -> list[Attention]:
        return [layer.attention.self.attn for layer in self.encoder.layer]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF ``BertModel`` names, with or without the ``bert.`` prefix of the task heads' checkpoints."""

        def skip(name: str) -> bool:
            return name.startswith("pooler.") or name in ("embeddings.position_ids", "embeddings.token_type_ids")

        load_hf_weights(self, weights, PACKED_MODULES, skip=skip, rename=lambda n: n.removeprefix("bert."))
