"""The fused CPU decode path: a quantized Llama-family or Gemma 3 model's generated rows in one C++ call.

``FusedDecoder.for_model`` reads the model's modules once (quantized projections, norm weights, rotary
frequencies, the KV caches the model runner gave its attention layers) into the extension's ``Decoder``
(``decode.cpp``); a decode step is then one call, with no Python work per layer. The projections run PyTorch's
own int4 / int8 kernels on the same bf16 operands as the torch path and every other op is the torch path's own
ATen call on the same operands, so the hidden states are the torch path's bit for bit (tested); what goes is
the Python around ~1,500 ops a step. Anything else (float weights, other families, images, the kernels' path)
returns None: the torch path runs.
"""

from __future__ import annotations

import logging

import torch

from inference.cpu import extension
from inference.layers.norm import GemmaRMSNorm, RMSNorm
from inference.models.gemma3 import Gemma3Attention, Gemma3DecoderLayer, Gemma3TextModel
from inference.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaMLP, LlamaModel
from inference.models.qwen3 import Qwen3Attention
from inference.weights.quantize import Int4Linear, Int8Linear

log = logging.getLogger("inference.cpu")

_ACTIVATIONS = {"silu": 0, "swish": 0, "gelu_pytorch_tanh": 1, "gelu_new": 1}


class Unsupported(ValueError):
    """The model cannot take the fused path (the message says why); the torch path serves it."""


def _quantized(module):
    """``module`` if the fused path can take it (int4 / int8 weights), else ``Unsupported``."""
    if not isinstance(module, Int4Linear | Int8Linear):
        raise Unsupported(f"{type(module).__name__} projections (the fused path takes int4 / int8 weights)")
    return module


def _linear(module) -> tuple:
    """The extension's view of a quantized projection: (kind, weight, scales, group, levels, bias, in, out, one
    row alone)."""
    if isinstance(module, Int4Linear):
        return (0, module.weight_int4, module.scales_and_zeros, module.group_size, module.levels, module.bias,
                module.in_features, module.out_features, bool(module.one_row))  # fmt: skip
    return (1, module.weight_int8, module.scales, 0, 1, module.bias, module.in_features, module.out_features,
            bool(module.one_row))  # fmt: skip


def _norm(module, eps: float) -> torch.Tensor | None:
    """The float32 weight the normalised rows are multiplied by (Gemma's 1 + weight)."""
    if module is None:
        return None
    if module.eps != eps:
        raise Unsupported("norms with different epsilons")
    if isinstance(module, GemmaRMSNorm):
        return (1.0 + module.weight.detach().float()).contiguous()
    if isinstance(module, RMSNorm):
        if module.weight.dtype != torch.float32:
            raise Unsupported("a non-float32 norm")
        return module.weight.detach().contiguous()
    raise Unsupported(f"{type(module).__name__} norms")


class FusedDecoder:
    """Runs generated rows through the whole decoder stack in one extension call."""

    def __init__(self, decoder, hidden_size: int, ropes: list, attention: list):
        self._decoder = decoder
        self.hidden_size = hidden_size
        self._ropes = ropes  # the model's RotaryEmbedding modules: global (and Gemma's local)
        self._attention = attention  # the layers' Attention modules, whose caches the decoder reads and writes
        self._cache = attention[0].k_cache

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> FusedDecoder | None:
        """The fused decoder of ``model`` (its caches already assigned), or None (logged) when it cannot run."""
        try:
            inner = _inner(model)
            module = extension.load()
            return None if module is None else cls._build(module, model, inner)
        except Unsupported as why:
            log.info("fused CPU decode off for %s: %s", type(model).__name__, why)
            return None

    @classmethod
    def _build(cls, module, model: torch.nn.Module, inner: torch.nn.Module) -> FusedDecoder:
        config = model.config
        layers = list(inner.layers)
        first = layers[0]
        attn = first.self_attn.attn
        eps = first.input_layernorm.eps
        act = _ACTIVATIONS.get(first.mlp.act.name)
        if act is None:
            raise Unsupported(f"the {first.mlp.act.name} activation")
        gemma = isinstance(inner, Gemma3TextModel)
        ropes = [inner.rotary_emb] + ([inner.rotary_emb_local] if gemma else [])
        embed = inner.embed_tokens.weight.detach()
        if embed.dtype != torch.float32 or embed.device.type != "cpu":
            raise Unsupported("weights not float32 on the CPU")
        # Gemma scales the embeddings by sqrt(hidden) rounded to the weights' dtype, as the torch path does
        embed_scale = float(torch.tensor(inner.embed_scale, dtype=embed.dtype)) if gemma else 1.0
        per_layer = [(lay.self_attn.qkv_proj, lay.self_attn.o_proj, lay.mlp.gate_up_proj, lay.mlp.down_proj)
                     for lay in layers]  # fmt: skip
        projections = [_quantized(m) for four in per_layer for m in four]
        head = getattr(model, "lm_head", None)
        if isinstance(head, Int4Linear | Int8Linear):
            projections.append(head)  # the head (and the torch path's decode rows) follow the check too
        _check_one_row(projections)
        decoder = module.Decoder(
            embed, embed_scale, _norm(inner.norm, eps), attn.num_heads, attn.num_kv_heads, attn.head_dim,
            config.intermediate_size, eps, attn.scale, act,
        )  # fmt: skip
        for layer, four in zip(layers, per_layer, strict=True):
            sa, a = layer.self_attn, layer.self_attn.attn
            if (a.num_heads, a.num_kv_heads, a.head_dim, a.scale) != (attn.num_heads, attn.num_kv_heads,
                                                                      attn.head_dim, attn.scale):  # fmt: skip
                raise Unsupported("layers of different attention shapes")
            if a.k_cache is None or a.k_cache is a.v_cache:
                raise Unsupported("no KV cache assigned")
            if layer.mlp.act.name != first.mlp.act.name:
                raise Unsupported("layers with different activations")
            linears = tuple(_linear(m) for m in four)
            if gemma:
                norms = (layer.input_layernorm, layer.post_attention_layernorm, layer.pre_feedforward_layernorm,
                         layer.post_feedforward_layernorm)  # fmt: skip
                rope = 0 if layer.layer_type == "full_attention" else 1
            else:
                norms = (layer.input_layernorm, None, layer.post_attention_layernorm, None)
                rope = 0
            heads = (getattr(sa, "q_norm", None), getattr(sa, "k_norm", None))
            decoder.add_layer(
                linears, tuple(_norm(m, eps) for m in (*norms, *heads)), rope, a.sliding_window or 0, a.k_cache,
                a.v_cache,
            )  # fmt: skip
        return cls(decoder, config.hidden_size, ropes, [layer.self_attn.attn for layer in layers])

    def __call__(
        self, ids: torch.Tensor, positions: torch.Tensor, write_slots: torch.Tensor, key_slots: torch.Tensor
    ) -> torch.Tensor:
        """ids, positions, write_slots [n] int64; key_slots [n, >= max(positions) + 1] int64 (each row's cache
        slot of every position up to its own) -> final hidden states [n, hidden] float32."""
        if self._attention[0].k_cache is not self._cache:  # another engine on this model gave it new caches
            self._decoder.set_caches([(a.k_cache, a.v_cache) for a in self._attention])
            self._cache = self._attention[0].k_cache
        tables = []
        for rotary in self._ropes:  # the step's cos / signed_sin per base, computed as the torch path computes them
            rope = rotary(positions, torch.float32)
            tables.append((rope.cos, rope.signed_sin))
        return self._decoder.forward(ids, positions, write_slots, key_slots, tables)


def _check_one_row(projections: list) -> None:
    """Set ``one_row`` on every projection: whether this machine's kernels give a row alone the bits they give it
    beside another, on all of them (checked once per model; later engines on it read the answer).

    PyTorch's int4 CPU kernel computes each row on its own (the same sequence of FMAs whatever the row count), but
    the torch path multiplies one row as two because some builds' one-row paths have rounded differently. Where they
    agree here (3 random rows per projection, against the two-row call), one row is multiplied alone: ~15% less
    kernel time at batch 1 for the same bits (the output head included).
    """
    if all(m.one_row is not None for m in projections):
        return
    gen = torch.Generator().manual_seed(0)
    exact = True
    with torch.inference_mode():
        for module in projections:
            for _ in range(3):
                x = torch.randn(1, module.in_features, generator=gen).bfloat16()
                exact = exact and torch.equal(module._mm(x), module._mm(torch.cat([x, x]))[:1])
            if not exact:
                log.info("fused CPU decode: one-row kernel calls round differently here; two rows per call")
                break
    for module in projections:
        module.one_row = exact


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a model the fused path takes; raises ``Unsupported`` otherwise."""
    inner = getattr(model, "model", None)
    forwards = {Gemma3TextModel.forward: Gemma3DecoderLayer.forward, LlamaModel.forward: LlamaDecoderLayer.forward}
    layer_forward = forwards.get(getattr(type(inner), "forward", None))
    if layer_forward is None:
        raise Unsupported(f"the {type(inner).__name__} architecture")
    for layer in inner.layers:  # Llama, Mistral, Qwen2, Qwen3 and Gemma 3 layers; not MoE, MLA, ALiBi
        if type(layer).forward is not layer_forward or type(layer.mlp) is not LlamaMLP:
            raise Unsupported(f"{type(layer).__name__} layers")
        if type(layer.self_attn) not in (LlamaAttention, Qwen3Attention, Gemma3Attention):
            raise Unsupported(f"{type(layer.self_attn).__name__}")
        a = layer.self_attn.attn
        if a.alibi_slopes is not None or a.shared_kv or not a.causal or a.num_heads % a.num_kv_heads:
            raise Unsupported("this attention")
    return inner
