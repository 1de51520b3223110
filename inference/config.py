"""Typed, validated configuration of the inference service: engine, models, server."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from inference.env import ConfigError, env_str

# vision: takes images (LLaVA); audio: Whisper; rerank: a cross-encoder scoring query-document pairs; tts: VITS
KINDS = ("chat", "completion", "embedding", "rerank", "vision", "audio", "moderation", "tts")
# none: float weights; the rest are CPU decode weights (inference/weights/quantize.py): int8 per row, int4 in
# groups of 32 (head int4 with its top 1024 logits exact), int4x2 (two int4 levels, ~8 bits), auto (int4 where lossless,
# as for GGUF Q4 weights, else int4x2)
QUANTIZE_MODES = ("none", "int8", "int4", "int4x2", "auto")


@dataclass
class EngineConfig:
    max_num_seqs: int = 32  # sequences decoding together
    max_batched_tokens: int = 2048  # tokens per step (prefill chunks + decodes)
    block_size: int = 16  # tokens per KV block
    # default: on CUDA what fits in gpu_memory_utilization of the GPU; on the CPU one context (max 32768)
    kv_cache_tokens: int | None = None
    gpu_memory_utilization: float = 0.9  # weights + activations + KV cache, of the GPU's memory
    max_model_len: int | None = None  # default: min(context length, kv_cache_tokens)
    dtype: str = "auto"  # weights, activations and KV cache: auto = float32 on the CPU, bfloat16 on CUDA
    device: str = "auto"  # "auto" (cuda when present, else cpu), "cpu", "cuda" or "cuda:N"
    # CPU weights, one of QUANTIZE_MODES: quantized for decode, bf16 copies for prefill ("none": float
    # everywhere, ~5x slower decode); ignored on CUDA. None (the default): "auto" for generative models, "none"
    # for embedding models, which are never quantized lossily unless asked (an embedding is read to 1e-5)
    quantize: str | None = None
    # the Triton kernels of kernels/: "auto" (on CUDA yes, on the CPU no), "on" (on the CPU only under
    # TRITON_INTERPRET=1: slow, for tests), "off" (the torch path everywhere)
    kernels: str = "auto"
    cuda_graphs: bool = True  # decode steps replayed as CUDA graphs (CUDA with kernels only)
    # CPU, quantized Llama-family / Gemma 3 models: generated rows through one C++ call per step
    # (inference/cpu/fused_decoder.py; the torch path when the extension cannot be built)
    fused_decode: bool = True
    # "dense": weights in ``dtype``; "gguf": a GGUF model's matrices in Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K or
    # Q6_K stay in their blocks, read by the Triton matmul (needs the kernels), the rest dense
    weights: str = "dense"
    # automatic prefix caching: prompts that start like an earlier one reuse its computed KV blocks
    enable_prefix_caching: bool = True

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.resolved_device().startswith("cuda") else "float32"

    def resolved_kernels(self) -> bool:
        """Whether the model runs on the Triton kernels; "on" where Triton cannot run is an error."""
        from inference.layers.kernel_switch import kernels_available

        device = self.resolved_device()
        if self.kernels == "on" and not kernels_available(device):
            raise ConfigError("engine.kernels = on needs CUDA, or TRITON_INTERPRET=1 on the CPU (tests only)")
        return self.kernels == "on" or (self.kernels == "auto" and device.startswith("cuda"))

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"engine.{name} must be positive")
        if self.kv_cache_tokens is not None and self.kv_cache_tokens < self.block_size:
            raise ConfigError("engine.kv_cache_tokens must hold at least one block")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError("engine.gpu_memory_utilization must be in (0, 1]")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"engine.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"engine.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.weights not in ("dense", "gguf"):
            raise ConfigError(f"engine.weights must be dense or gguf, got {self.weights!r}")
        if self.kernels not in ("auto", "on", "off"):
            raise ConfigError(f"engine.kernels must be auto, on or off, got {self.kernels!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            raise ConfigError(f"engine.quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")


@dataclass
class ModelSpec:
    id: str  # the name clients use
    source: str  # packaged:smollm2 | packaged:gemma3 | packaged:minilm | a .gguf file | an HF directory
    kind: str  # chat | completion | embedding | rerank | vision | audio | moderation (Llama Guard) | tts (VITS)
    engine: EngineConfig = field(default_factory=EngineConfig)
    max_output_length: int | None = None  # default: max_model_len
    # how the model writes tool calls (LightLLM's --tool_call_parser): auto (from its chat template), hermes,
    # qwen25, llama3, mistral or json_block
    tool_call_format: str = "auto"
    # a reasoning model's think block (Qwen3's <think>...</think>): "auto" returns it apart, as reasoning_content,
    # when the template and vocabulary have one; "off" leaves it in the content
    reasoning: str = "auto"
    # LoRA adapters on this model (vLLM's --lora-modules): name -> a PEFT adapter directory; each name is served as
    # a model of its own, the base model with that adapter (chat and completion models)
    lora_modules: dict[str, str] = field(default_factory=dict)

    def quantize_mode(self) -> str:
        """The CPU weights' mode: the engine's, else the kind's default ("none" for encoders, else "auto"; for
        speech, the decoder's steps on the int kernels, the encoder and window prefixes on bf16 copies)."""
        if self.engine.quantize is not None:
            return self.engine.quantize
        return "none" if self.kind in ("embedding", "rerank", "tts") else "auto"

    def __post_init__(self) -> None:
        from inference.function_calling.formats import FORMAT_NAMES

        if self.tool_call_format not in FORMAT_NAMES:
            raise ConfigError(
                f"model {self.id}: tool_call_format must be one of {', '.join(FORMAT_NAMES)}, "
                f"got {self.tool_call_format!r}"
            )
        if self.reasoning not in ("auto", "off"):
            raise ConfigError(f"model {self.id}: reasoning must be auto or off, got {self.reasoning!r}")
        if not self.id or "/" in self.id.strip("/") and self.id.startswith("/"):
            raise ConfigError(f"model id {self.id!r} is not valid")
        if self.kind not in KINDS:
            raise ConfigError(f"model {self.id}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.source:
            raise ConfigError(f"model {self.id}: source is required")
        if self.lora_modules and self.kind not in ("chat", "completion"):
            raise ConfigError(f"model {self.id}: LoRA adapters are served on chat and completion models only")
        for name, path in self.lora_modules.items():
            if not isinstance(name, str) or not name or name == self.id or not isinstance(path, str) or not path:
                raise ConfigError(f'model {self.id}: lora_modules takes name = "adapter directory", got {name!r}')


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8100
    models: list[ModelSpec] = field(default_factory=list)
    threads: int | None = None  # torch intra-op threads (default: all cores)
    # The shared secret the hub sends as "Authorization: Bearer ..." (default: INFERENCE_API_KEY). Required when
    # the service listens beyond loopback: without it, anything that reaches the port skips keys, limits, metering.
    api_key: str | None = field(default_factory=lambda: env_str("INFERENCE_API_KEY", "") or None)
    # > 1: the one generative model split over this many processes (``inference/parallel``; NCCL over that many
    # GPUs, gloo on the CPU), one scheduler in this process driving them
    tensor_parallel_size: int = 1
    # the tally's ledger also on disk (``inference/server/journal.py``): calls this service was running when it was
    # killed are still metered after it is started again on the same file (``make run`` gives its data directory's)
    tally_path: str | None = field(default_factory=lambda: env_str("INFERENCE_TALLY_PATH", "") or None)

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"server.port must be 1..65535, got {self.port}")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ConfigError("the inference API key (INFERENCE_API_KEY) must be at least 16 characters")
        if not self.api_key and not is_loopback(self.host):
            raise ConfigError(
                f"listening on {self.host} (beyond loopback) needs a shared secret: set INFERENCE_API_KEY (or "
                "server.api_key) here, and give the hub the same one (manage.py sync_models URL --api-key KEY)"
            )
        if not self.models:
            raise ConfigError("no models configured")
        ids = [m.id for m in self.models] + [name for m in self.models for name in m.lora_modules]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate model ids (LoRA adapters' names included): {ids}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"server.tensor_parallel_size must be at least 1, got {self.tensor_parallel_size}")
        if self.tensor_parallel_size > 1 and [m.kind for m in self.models] not in (["chat"], ["completion"]):
            raise ConfigError("tensor parallelism serves one chat or completion model per service: configure only "
                              f"that model, got {', '.join(f'{m.id} ({m.kind})' for m in self.models)}")  # fmt: skip
        if self.tensor_parallel_size > 1 and any(m.lora_modules for m in self.models):
            raise ConfigError("LoRA adapters are not served with tensor parallelism")
        if self.tensor_parallel_size > 1 and any(m.engine.weights == "gguf" for m in self.models):
            raise ConfigError("tensor parallelism shards dense weights: engine.weights = gguf (one GPU on the "
                              "file's blocks) cannot be split over ranks; use weights = dense")  # fmt: skip


DEFAULT_MODELS = [
    ModelSpec(id="smollm2-135m-instruct", source="packaged:smollm2", kind="chat"),
    ModelSpec(id="gemma-3-270m", source="packaged:gemma3", kind="completion"),
    ModelSpec(id="all-minilm-l6-v2", source="packaged:minilm", kind="embedding"),
    ModelSpec(id="whisper-base", source="packaged:whisper-base", kind="audio"),
]


def _engine(raw: dict, where: str) -> EngineConfig:
    try:
        return EngineConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: Path) -> ServerConfig:
    """Read a TOML file: ``[server]`` host/port/threads, ``[engine]`` defaults, ``[[models]]`` entries."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    defaults = raw.get("engine", {})
    models = []
    for i, entry in enumerate(raw.get("models", [])):
        entry = dict(entry)
        engine = _engine({**defaults, **entry.pop("engine", {})}, f"models[{i}].engine")
        try:
            models.append(ModelSpec(engine=engine, **entry))
        except TypeError as exc:
            raise ConfigError(f"models[{i}]: {exc}") from None
    try:
        return ServerConfig(models=models, **raw.get("server", {}))
    except TypeError as exc:
        raise ConfigError(f"server: {exc}") from None
