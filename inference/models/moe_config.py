"""Configs of the mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE), built from an HF ``config.json``
dict and validated on construction: the decoder's fields plus the experts', and which layers are sparse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.models.config import (
    ConfigError,
    DecoderConfig,
    _check_positive,
    _flat_rope,
    _qwen_fields,
    _require,
)


@dataclass(kw_only=True)
class MoEConfig(DecoderConfig):
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int  # each expert's; ``intermediate_size`` is the dense layers' MLP
    norm_topk_prob: bool = True  # renormalise the chosen experts' weights to sum to 1
    shared_expert_intermediate_size: int = 0  # Qwen2-MoE's shared expert (0: none)
    # per layer: a sparse (experts) MLP or a dense one; empty: every layer sparse
    sparse_layers: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        _check_positive(owner, num_experts=self.num_experts, moe_intermediate_size=self.moe_intermediate_size)
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ConfigError(
                f"{owner}: num_experts_per_tok must be in 1..num_experts ({self.num_experts}), "
                f"got {self.num_experts_per_tok}"
            )
        if self.shared_expert_intermediate_size < 0:
            raise ConfigError(f"{owner}: shared_expert_intermediate_size must be >= 0")
        if not self.sparse_layers:
            self.sparse_layers = [True] * self.num_hidden_layers
        if len(self.sparse_layers) != self.num_hidden_layers:
            raise ConfigError(f"{owner}: {len(self.sparse_layers)} sparse flags for {self.num_hidden_layers} layers")


def _qwen_sparse_layers(hf: dict[str, Any], layers: int) -> list[bool]:
    """As transformers' Qwen MoE layers decide: sparse unless in ``mlp_only_layers``, every
    ``decoder_sparse_step``-th layer."""
    step = hf.get("decoder_sparse_step", 1) or 1
    dense = set(hf.get("mlp_only_layers") or [])
    return [i not in dense and (i + 1) % step == 0 for i in range(layers)]


@dataclass(kw_only=True)
class MixtralConfig(MoEConfig):
    """Mixtral: Llama's attention (GQA, no biases), a sliding window on every layer where configured, every layer's
    MLP ``num_local_experts`` experts of ``intermediate_size``, the top 2 renormalised."""

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> MixtralConfig:
        owner = cls.__name__
        common = cls._common_from_hf(hf, owner)
        window = hf.get("sliding_window")
        return cls(
            **common,
            rope=_flat_rope(hf, common["max_position_embeddings"]),
            hidden_act=hf.get("hidden_act", "silu"),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            sliding_windows=[window] * common["num_hidden_layers"] if window else [],
            num_experts=_require(hf, "num_local_experts", owner),
            num_experts_per_tok=hf.get("num_experts_per_tok", 2),
            moe_intermediate_size=common["intermediate_size"],
            norm_topk_prob=True,
        )


def _qwen_moe_fields(hf: dict[str, Any], owner: str, layers: int) -> dict[str, Any]:
    # the published checkpoints say num_experts; transformers 5 writes num_local_experts (its attribute map)
    key = "num_experts" if hf.get("num_experts") is not None else "num_local_experts"
    return dict(
        num_experts=_require(hf, key, owner),
        num_experts_per_tok=_require(hf, "num_experts_per_tok", owner),
        moe_intermediate_size=_require(hf, "moe_intermediate_size", owner),
        norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
        sparse_layers=_qwen_sparse_layers(hf, layers),
    )


@dataclass(kw_only=True)
class Qwen2MoeConfig(MoEConfig):
    """Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): Qwen2's attention (q/k/v biases), experts plus a shared expert
    whose output a sigmoid gate scales; the top-k weights kept as the softmax gave them unless ``norm_topk_prob``."""

    qkv_bias: bool = True

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Qwen2MoeConfig:
        owner = cls.__name__
        common = cls._common_from_hf(hf, owner)
        layers = common["num_hidden_layers"]
        return cls(
            **_qwen_fields(hf, common),
            **_qwen_moe_fields(hf, owner, layers),
            shared_expert_intermediate_size=hf.get("shared_expert_intermediate_size") or 0,
        )


@dataclass(kw_only=True)
class Qwen3MoeConfig(MoEConfig):
    """Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): Qwen3's attention (QK-norm, explicit head_dim), experts, no shared
    expert."""

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Qwen3MoeConfig:
        owner = cls.__name__
        common = cls._common_from_hf(hf, owner)
        common["head_dim"] = hf.get("head_dim") or 128
        bias = bool(hf.get("attention_bias", False))
        layers = common["num_hidden_layers"]
        return cls(**_qwen_fields(hf, common), **_qwen_moe_fields(hf, owner, layers), qkv_bias=bias, o_bias=bias)


TOPK_METHODS = ("greedy", "group_limited_greedy")


@dataclass(kw_only=True)
class DeepseekV2Config(MoEConfig):
    """DeepSeek-V2 (and -Lite, Coder-V2): multi-head latent attention (q optionally through a low-rank
    ``q_lora_rank`` with its norm, k/v through the ``kv_lora_rank`` latent with its norm, a rope part of the
    q/k heads apart from the rest, ``v_head_dim`` != the q/k head size), yarn rope with its mscale; experts
    routed by softmax, top k (within the ``topk_group`` best of ``n_group`` groups when group-limited), their
    weights times ``routed_scaling_factor``, plus ``n_shared_experts`` always on; the first
    ``first_k_dense_replace`` layers dense. ``head_dim`` is the rope part's, as transformers sets it."""

    q_lora_rank: int | None = None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    routed_scaling_factor: float = 1.0
    topk_method: str = "greedy"
    n_group: int = 1
    topk_group: int = 1
    n_shared_experts: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        _check_positive(owner, kv_lora_rank=self.kv_lora_rank, qk_nope_head_dim=self.qk_nope_head_dim,
                        qk_rope_head_dim=self.qk_rope_head_dim, v_head_dim=self.v_head_dim,
                        routed_scaling_factor=self.routed_scaling_factor)  # fmt: skip
        if self.q_lora_rank is not None:
            _check_positive(owner, q_lora_rank=self.q_lora_rank)
        if self.topk_method not in TOPK_METHODS:
            raise ConfigError(f"{owner}: topk_method {self.topk_method!r} is not supported ({', '.join(TOPK_METHODS)})")
        if self.topk_method == "group_limited_greedy" and (
            self.num_experts % self.n_group or not 1 <= self.topk_group <= self.n_group
        ):
            raise ConfigError(
                f"{owner}: group-limited routing needs n_group ({self.n_group}) dividing n_routed_experts "
                f"({self.num_experts}) and 1 <= topk_group ({self.topk_group}) <= n_group"
            )

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> DeepseekV2Config:
        owner = cls.__name__
        if hf.get("topk_method") == "noaux_tc" or hf.get("scoring_func", "softmax") != "softmax":
            raise ConfigError(f"{owner}: DeepSeek-V3's sigmoid routing (noaux_tc) is not supported")
        common = cls._common_from_hf(hf, owner)
        rope_dim = _require(hf, "qk_rope_head_dim", owner)
        common["head_dim"] = rope_dim
        layers = common["num_hidden_layers"]
        first_dense = hf.get("first_k_dense_replace") or 0
        step = hf.get("moe_layer_freq") or 1
        key = "n_routed_experts" if hf.get("n_routed_experts") is not None else "num_local_experts"
        return cls(
            **common,
            rope=_flat_rope(hf, common["max_position_embeddings"]),
            hidden_act=hf.get("hidden_act", "silu"),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            num_experts=_require(hf, key, owner),
            num_experts_per_tok=_require(hf, "num_experts_per_tok", owner),
            moe_intermediate_size=_require(hf, "moe_intermediate_size", owner),
            norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
            sparse_layers=[i >= first_dense and i % step == 0 for i in range(layers)],
            q_lora_rank=hf.get("q_lora_rank"),
            kv_lora_rank=_require(hf, "kv_lora_rank", owner),
            qk_nope_head_dim=_require(hf, "qk_nope_head_dim", owner),
            qk_rope_head_dim=rope_dim,
            v_head_dim=_require(hf, "v_head_dim", owner),
            routed_scaling_factor=float(hf.get("routed_scaling_factor", 1.0)),
            topk_method=hf.get("topk_method") or "greedy",
            n_group=hf.get("n_group") or 1,
            topk_group=hf.get("topk_group") or 1,
            n_shared_experts=hf.get("n_shared_experts") or 0,
            qkv_bias=bool(hf.get("attention_bias", False)),
            o_bias=bool(hf.get("attention_bias", False)),
        )
