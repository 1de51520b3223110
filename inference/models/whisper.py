"""Whisper (``WhisperForConditionalGeneration``): a convolution front and a Transformer encoder over 30 s of log-mel
features, and a Transformer decoder that writes text tokens attending to its own past (self-attention, cached) and
to the encoded audio (cross-attention, its keys and values computed once per window).

Pre-LayerNorm blocks, exact GELU, learned decoder positions, sinusoidal encoder positions (stored as weights), and
the output projection tied to the token embeddings. HF parameter names, except that the self-attention's
q/k/v are fused into ``qkv_proj`` and the cross-attention's k/v into ``kv_proj``; HF's ``k_proj`` has no bias, so
the fused ones carry zeros in its rows.

The encoder runs a batch of windows as one flat batch through ``Attention`` (the Triton kernels when the model is
on them); the decoder's rows each sit at their own position in ``DecoderState`` and attend with torch's SDPA, or on
the kernels with each row's cache as one block of a paged cache (self-attention) and as one sequence of a
variable-length batch (cross-attention).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers.activation import get_activation
from inference.layers.attention import Attention
from inference.layers.context import ForwardContext, forward_context
from inference.layers.linear import MergedLinear, load_hf_weights
from inference.layers.norm import LayerNorm
from inference.models.whisper_config import WhisperConfig

PACKED_MODULES = {
    "self_q": ("qkv_proj", "q"),
    "self_k": ("qkv_proj", "k"),
    "self_v": ("qkv_proj", "v"),
    "cross_k": ("kv_proj", "k"),
    "cross_v": ("kv_proj", "v"),
}
# HF's attention projections -> the names PACKED_MODULES fuses (self-attention q/k/v, cross-attention k/v)
_RENAMES = [(f".{block}.{p}_proj", f".{block}.{prefix}_{p}") for block, prefix, names in
            (("self_attn", "self", "qkv"), ("encoder_attn", "cross", "kv")) for p in names]  # fmt: skip
_DECODER_RENAMES = [(".self_attn.out_proj", ".self_out_proj"), (".encoder_attn.out_proj", ".cross_out_proj"),
                    (".self_attn.", "."), (".encoder_attn.", ".")]  # fmt: skip


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, heads * D] -> [B, T, heads, D]."""
    B, T, _ = x.shape
    return x.view(B, T, heads, -1)


@dataclass
class DecoderState:
    """The decoder's caches for a batch of rows. Per layer: self-attention keys / values
    [rows, H, max_target_positions, D] written as tokens arrive, and cross-attention keys / values [rows, H, 1500, D]
    of each row's encoded window; ``position_major`` (the kernels' layout): [rows, positions, H, D], so that a row
    range flattens to a cache of [slots, H, D] (torch's SDPA reads heads-first at half the time). The engine keeps one
    state for all its rows and works on views of row ranges, so a row joins, steps and leaves without the others
    being copied."""

    self_k: list[torch.Tensor]
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]
    cross_v: list[torch.Tensor]
    lengths: torch.Tensor  # [rows] int64: tokens cached in each row
    position_major: bool = False

    @property
    def rows(self) -> int:
        return int(self.lengths.shape[0])

    def view(self, start: int, stop: int) -> DecoderState:
        """Rows ``start:stop``, sharing memory with this state."""

        def cut(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t[start:stop] for t in tensors]

        return DecoderState(cut(self.self_k), cut(self.self_v), cut(self.cross_k), cut(self.cross_v),
                            self.lengths[start:stop], self.position_major)  # fmt: skip

    def move_row(self, src: int, dst: int) -> None:
        """Copy row ``src`` over row ``dst`` (the engine fills a departed row's place with its last row)."""
        for tensors in (self.self_k, self.self_v, self.cross_k, self.cross_v):
            for t in tensors:
                t[dst].copy_(t[src])
        self.lengths[dst] = self.lengths[src]


class WhisperEncoderAttention(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        d, heads = config.d_model, config.encoder_attention_heads
        self.qkv_proj = MergedLinear(d, {"q": d, "k": d, "v": d}, bias=True)
        self.attn = Attention(heads, heads, d // heads, scale=(d // heads) ** -0.5, causal=False)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flat windows [T, d] under a non-causal ``ForwardContext`` -> [T, d]."""
        return self.out_proj(self.attn(*self.qkv_proj.split(self.qkv_proj(x))))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        d = config.d_model
        self.self_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.self_attn = WhisperEncoderAttention(config)
        self.final_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.act = get_activation(config.activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        d = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.layers = nn.ModuleList(WhisperEncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.act = get_activation(config.activation_function)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 3000] log-mel windows -> [B, 1500, d]."""
        x = self.act(self.conv2(self.act(self.conv1(features.to(self.conv1.weight.dtype)))))
        x = x.transpose(1, 2) + self.embed_positions.weight  # [B, 1500, d]
        B, T, d = x.shape
        flat = x.reshape(B * T, d)
        with forward_context(ForwardContext.for_prompts([T] * B, causal=False)):
            for layer in self.layers:
                flat = layer(flat)
        return self.layer_norm(flat).view(B, T, d)


class WhisperDecoderLayer(nn.Module):
    kernels = False  # its attentions on the Triton kernels (set for the whole model by inference.layers.kernel_switch)

    def __init__(self, config: WhisperConfig):
        super().__init__()
        d = config.d_model
        self.heads = config.decoder_attention_heads
        self.scale = (d // self.heads) ** -0.5
        self.self_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.qkv_proj = MergedLinear(d, {"q": d, "k": d, "v": d}, bias=True)
        self.self_out_proj = nn.Linear(d, d)
        self.encoder_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = MergedLinear(d, {"k": d, "v": d}, bias=True)
        self.cross_out_proj = nn.Linear(d, d)
        self.final_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.act = get_activation(config.activation_function)

    def cross_kv(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 1500, d] -> keys, values [B, 1500, H, D]."""
        k, v = self.kv_proj.split(self.kv_proj(encoded))
        return _heads(k, self.heads), _heads(v, self.heads)

    def forward(self, x, positions, state: DecoderState, i: int, mask: torch.Tensor, scores: dict | None = None):
        """x [B, T, d] at ``positions`` [B, T]; ``mask`` [B, 1, T, L] the keys each query may see. ``scores``: layer
        index -> this layer's cross-attention logits (see ``cross_scores``), filled in for the layers it names."""
        q, k, v = (_heads(t, self.heads) for t in self.qkv_proj.split(self.qkv_proj(self.self_attn_layer_norm(x))))
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        at = (rows, positions) if state.position_major else (rows, slice(None), positions)
        state.self_k[i][at] = k.to(state.self_k[i].dtype)  # [B, T, H, D] at each row's positions
        state.self_v[i][at] = v.to(state.self_v[i].dtype)
        attend = self._attend_kernels if self.kernels else self._attend
        x = x + self.self_out_proj(attend(q, state.self_k[i], state.self_v[i], mask, state.position_major))
        q = _heads(self.q_proj(self.encoder_attn_layer_norm(x)), self.heads)
        if scores is not None and i in scores:
            scores[i] = self.cross_scores(q, state.cross_k[i], state.position_major)
        x = x + self.cross_out_proj(attend(q, state.cross_k[i], state.cross_v[i], None, state.position_major))
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))

    def cross_scores(self, q: torch.Tensor, keys: torch.Tensor, position_major: bool) -> torch.Tensor:
        """q [B, T, H, D] against the window's keys [B, H, P, D] (position-major: [B, P, H, D]) -> the scaled dot
        products [B, H, T, P] in float32, before the softmax (word timestamps read the alignment heads' ones)."""
        pattern = "bthd,bphd->bhtp" if position_major else "bthd,bhpd->bhtp"
        return torch.einsum(pattern, q.float(), keys.float()) * self.scale

    def _attend(self, q, keys, values, mask: torch.Tensor | None, position_major: bool) -> torch.Tensor:
        """q [B, T, H, D] over each row's keys / values [B, H, P, D] (position-major: [B, P, H, D]); self-attention:
        the first L, under ``mask`` [B, 1, T, L]; cross: all -> [B, T, H * D]."""
        if position_major:
            keys, values = keys.transpose(1, 2), values.transpose(1, 2)
        if mask is not None:
            keys, values = keys[:, :, : mask.shape[-1]], values[:, :, : mask.shape[-1]]
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask, scale=self.scale)
        return out.transpose(1, 2).reshape(*q.shape[:2], -1)

    def _attend_kernels(self, q, keys, values, mask: torch.Tensor | None, position_major: bool) -> torch.Tensor:
        """``_attend`` on the Triton kernels: self-attention reads each row's cache as one block of ``P`` slots of a
        paged cache (its queries are the last of ``context`` positions, ``mask``'s last column + 1); cross-attention
        takes the rows' windows as a variable-length batch of sequences of ``P`` keys."""
        from kernels.prefill_attention import paged_attention, varlen_attention

        assert position_major, "a state made before the model went on the kernels (make a new one)"
        B, T, H, D = q.shape
        P = keys.shape[1]
        flat_q = q.reshape(B * T, H, D)
        flat_k, flat_v = keys.reshape(B * P, H, D), values.reshape(B * P, H, D)
        cu_q = torch.arange(0, B * T + 1, T, dtype=torch.int32, device=q.device)
        if mask is None:
            cu_k = torch.arange(0, B * P + 1, P, dtype=torch.int32, device=q.device)
            out = varlen_attention(flat_q, flat_k, flat_v, cu_q, cu_k, self.scale, causal=False, max_seqlen_q=T)
        else:
            tables = torch.arange(B, dtype=torch.int32, device=q.device)[:, None]
            context = mask[:, 0, -1].sum(-1).to(torch.int32)  # [B]: the last query sees its whole row
            out = paged_attention(flat_q, flat_k, flat_v, tables, cu_q, context, P, self.scale, max_seqlen_q=T)
        return out.reshape(B, T, H * D)


class WhisperDecoder(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        d = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.embed_positions = nn.Embedding(config.max_target_positions, d)
        self.layers = nn.ModuleList(WhisperDecoderLayer(config) for _ in range(config.decoder_layers))
        self.layer_norm = LayerNorm(d, eps=config.layer_norm_eps)


class WhisperModel(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)


class WhisperForConditionalGeneration(nn.Module):
    config_class = WhisperConfig

    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = config
        self.model = WhisperModel(config)
        self.lm_head: nn.Module | None = None  # None: the tied embedding; a quantized head once quantized

    @property
    def tied_embeddings(self) -> nn.Embedding:
        """The token embeddings the output projection shares (``quantize`` gives them a quantized head)."""
        return self.model.decoder.embed_tokens

    @torch.inference_mode()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 3000] -> [B, 1500, d]."""
        return self.model.encoder(features)

    def new_state(self, rows: int, dtype: torch.dtype | None = None) -> DecoderState:
        """Caches for ``rows`` rows (empty until ``set_audio``), in the layout of the layers' attention (switch the
        model to the kernels first)."""
        cfg = self.config
        position_major = self.model.decoder.layers[0].kernels
        weight = self.model.decoder.embed_tokens.weight
        dtype = dtype or weight.dtype
        heads, head_dim = cfg.decoder_attention_heads, cfg.d_model // cfg.decoder_attention_heads

        def zeros(positions: int) -> list[torch.Tensor]:
            shape = (rows, positions, heads, head_dim) if position_major else (rows, heads, positions, head_dim)
            return [weight.new_zeros(shape, dtype=dtype) for _ in range(cfg.decoder_layers)]

        return DecoderState(zeros(cfg.max_target_positions), zeros(cfg.max_target_positions),
                            zeros(cfg.max_source_positions), zeros(cfg.max_source_positions),
                            torch.zeros(rows, dtype=torch.long, device=weight.device), position_major)  # fmt: skip

    @torch.inference_mode()
    def set_audio(self, state: DecoderState, encoded: torch.Tensor) -> None:
        """Point ``state``'s rows at encoded windows [rows, 1500, d]: their cross-attention keys / values, and
        empty self-attention caches."""
        for i, layer in enumerate(self.model.decoder.layers):
            k, v = layer.cross_kv(encoded)  # [rows, 1500, H, D]
            state.cross_k[i].copy_(k if state.position_major else k.transpose(1, 2))
            state.cross_v[i].copy_(v if state.position_major else v.transpose(1, 2))
        state.lengths.zero_()

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, state: DecoderState, prompt: bool = False) -> torch.Tensor:
        """tokens [B, T] appended to each row of ``state`` at its own length -> logits [B, T, vocab] (float32).

        ``prompt``: the tokens are a window's prefix (quantized layers multiply them by their prefill weights), else
        sampled tokens (the decode kernels): a row's numbers never depend on how many rows there are."""
        B, T = tokens.shape
        roles = ForwardContext(cu_seqlens_q=list(range(0, B * T + 1, T)), context_lens=[T] * B,
                               prompt_lens=[T if prompt else 0] * B)  # fmt: skip
        with forward_context(roles):
            return self._decode(tokens, state)

    @torch.inference_mode()
    def cross_attention_scores(
        self, tokens: torch.Tensor, state: DecoderState, layers: Iterable[int]
    ) -> dict[int, torch.Tensor]:
        """tokens [B, T] decoded as a window's prefix from each row's start -> for each of ``layers``, the
        cross-attention logits [B, H, T, 1500] (float32, before the softmax): where each token's query looks in the
        audio. The other layers compute none."""
        state.lengths.zero_()
        scores: dict[int, torch.Tensor | None] = dict.fromkeys(layers)
        B, T = tokens.shape
        roles = ForwardContext(cu_seqlens_q=list(range(0, B * T + 1, T)), context_lens=[T] * B, prompt_lens=[T] * B)
        with forward_context(roles):
            self._decode(tokens, state, scores)
        return scores

    def _decode(self, tokens: torch.Tensor, state: DecoderState, scores: dict | None = None) -> torch.Tensor:
        decoder = self.model.decoder
        B, T = tokens.shape
        positions = state.lengths[:, None] + torch.arange(T, device=tokens.device)  # [B, T]
        if int(positions.max()) >= self.config.max_target_positions:
            raise ValueError(f"the decoder holds at most {self.config.max_target_positions} tokens")
        x = decoder.embed_tokens(tokens) + decoder.embed_positions(positions)
        L = int(positions.max()) + 1
        mask = (torch.arange(L, device=tokens.device)[None, None, :] <= positions[:, :, None])[:, None]
        for i, layer in enumerate(decoder.layers):
            x = layer(x, positions, state, i, mask, scores)
        state.lengths += T
        x = decoder.layer_norm(x)
        if self.lm_head is not None:
            return self.lm_head(x).float()
        return F.linear(x, decoder.embed_tokens.weight).float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF ``WhisperForConditionalGeneration`` names; ``proj_out`` is the tied embedding and is skipped."""

        def with_key_biases(items: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in items:
                yield name, tensor
                if name.endswith("k_proj.weight"):  # HF's k_proj has no bias: the fused rows get zeros
                    yield name.removesuffix("weight") + "bias", tensor.new_zeros(tensor.shape[0])

        def rename(name: str) -> str:
            for old, new in _RENAMES:
                name = name.replace(old, new)
            if ".decoder.layers." in name:  # the decoder layer holds both attentions' projections itself
                for old, new in _DECODER_RENAMES:
                    name = name.replace(old, new)
            return name

        load_hf_weights(self, with_key_biases(weights), PACKED_MODULES, skip=lambda n: n == "proj_out.weight",
                        rename=rename)  # fmt: skip
