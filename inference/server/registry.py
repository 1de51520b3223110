"""The models one service serves: loaded once at start, each with its engine, which one loop on the main thread
steps (``engine/worker.py``)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference import weights_cache
from inference.config import ModelSpec
from inference.engine.embedding_engine import EmbeddingEngine
from inference.engine.guided import GrammarError
from inference.engine.llm_engine import LLMEngine
from inference.engine.worker import EngineLoop, EngineWorker
from inference.env import ConfigError, prefill_dtype
from inference.layers.kernel_switch import use_kernels
from inference.loader.sources import gguf_file, resolve_source
from inference.server.errors import model_not_found
from inference.server.guard import GuardFormat, detect
from inference.server.metrics import Metrics

log = logging.getLogger("inference.registry")


@dataclass
class VisionSupport:
    """How a vision model takes images: its preprocessing, its image token, how its template places images."""

    processor: object  # inference.multimodal.processor.ImageProcessor
    image_token: str
    image_token_id: int
    content_format: str  # "parts" or "string" (inference.multimodal.prompt.detect_content_format)


def _vision_support(spec: ModelSpec, model: torch.nn.Module, tokenizer, directory: Path) -> VisionSupport:
    from inference.multimodal.processor import ImageProcessor, ProcessorConfigError
    from inference.multimodal.prompt import detect_content_format

    if not hasattr(model, "encode_images"):
        raise ConfigError(f"model {spec.id}: kind vision needs a vision-language checkpoint (LLaVA 1.5 or NeXT)")
    try:
        processor = ImageProcessor.from_dir(directory, model.llava_config)
    except ProcessorConfigError as exc:
        raise ConfigError(f"model {spec.id}: {exc}") from None
    token = tokenizer.id_to_token(model.image_token_id)
    if token is None or token not in tokenizer.special_tokens:
        raise ConfigError(
            f"model {spec.id}: image token id {model.image_token_id} is not a special token of its tokenizer"
        )
    return VisionSupport(processor, token, model.image_token_id, detect_content_format(tokenizer, token))


@dataclass
class SpeechSupport:
    """How a speech model takes audio: its special tokens and languages, its mel bins."""

    vocab: object  # inference.speech.vocab.WhisperVocab
    n_mels: int


@dataclass
class LoadedModel:
    spec: ModelSpec
    tokenizer: object
    engine: object
    worker: EngineWorker
    max_model_len: int
    max_output_length: int
    hidden_size: int  # embedding dimensions (0 for generative models, as the reference reports)
    vocab_size: int
    created: int
    tool_format: str = "hermes"  # how this model writes tool calls (inference/function_calling/formats.py)
    guides: object = None  # its grammar compiler (inference.engine.guided.GuideCompiler), chat models only
    reasoning: object = None  # a reasoning model's think markers (inference.server.reasoning.ReasoningFormat)
    vision: VisionSupport | None = None  # vision models only
    speech: SpeechSupport | None = None  # audio models only
    guard: GuardFormat | None = None  # moderation models only: the categories its chat template lists
    load_seconds: float = 0.0  # how long this start took to load it (prepared weights cached: seconds)
    # a LoRA adapter served as a model of its own: its engine slot, and the model it runs on (its name, its path)
    lora_id: int | None = None
    parent: str | None = None
    root: str | None = None
    adapters: list[LoadedModel] = field(default_factory=list)  # a base model's, served beside it

    def adapter(self, name: str, slot: int, path: str) -> LoadedModel:
        """This (base) model's entry for its LoRA adapter ``name`` at engine ``slot``: the same engine and tokenizer."""
        spec = dataclasses.replace(self.spec, id=name, lora_modules={})
        return dataclasses.replace(self, spec=spec, lora_id=slot, parent=self.id, root=path, adapters=[])

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.spec.kind

    def card(self) -> dict:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "llm-hub",
            "kind": self.kind,
            "max_model_len": self.max_model_len,
            **({"parent": self.parent, "root": self.root} if self.parent is not None else {}),  # vLLM's, for LoRA
            "meta_data": {
                "max_sequence_length": self.max_model_len,
                "hidden_size": self.hidden_size,
                "max_output_length": self.max_output_length,
            },
        }


def build_model(spec: ModelSpec, tp: tuple[int, int] | None = None):
    """The model as ``spec`` serves it (weights, dtype, device, quantization), its tokenizer and directory;
    ``tp`` (rank, size): this rank's slice of it, unquantized (tensor parallelism is for GPUs; on the CPU it runs
    for tests, in float)."""
    from inference.loader.safetensors import load_model
    from inference.tokenizer.tokenizer import Tokenizer

    gguf = gguf_file(spec.source) if spec.engine.weights == "gguf" else None
    if spec.engine.weights == "gguf" and (gguf is None or not spec.engine.resolved_kernels()):
        raise ConfigError(f"model {spec.id}: engine.weights = gguf needs a GGUF source and the kernels (CUDA)")
    if gguf is not None and tp is not None:  # also when --tensor-parallel-size came after the config's checks
        raise ConfigError(f"model {spec.id}: tensor parallelism shards dense weights, not engine.weights = gguf")
    if gguf is not None:  # on its blocks: the conversion leaves out what the blocks replace
        from inference.loader.convert import ensure_converted
        from inference.weights.gguf import block_tensor_names

        directory = ensure_converted(gguf, skip=block_tensor_names(gguf))
    else:
        directory = resolve_source(spec.source)
    dtype = getattr(torch, spec.engine.resolved_dtype())
    device = spec.engine.resolved_device()  # chosen once, at start; on CUDA the layers run on Triton kernels
    if spec.kind == "tts":  # VITS: float weights as stored (convolutions: nothing to quantize), its characters
        from inference.synthesis.characters import CharacterTokenizer

        model = load_model(directory, dtype=dtype, device=device).eval()
        if not hasattr(model, "synthesize"):
            raise ConfigError(f"model {spec.id}: kind tts needs a VITS checkpoint (VitsModel)")
        return model, CharacterTokenizer.from_dir(directory, spec.id), directory
    if spec.kind == "audio":  # Whisper: float weights as stored, its own vocabulary
        from inference.speech.vocab import WhisperVocab

        model = load_model(directory, dtype=dtype, device=device).eval()
        if not hasattr(model, "new_state"):
            raise ConfigError(f"model {spec.id}: kind audio needs a Whisper checkpoint")
        if device == "cpu":
            prepare_cpu(model, spec.quantize_mode())  # the decoder's steps on the int kernels (or float rows)
        return model, WhisperVocab.from_dir(directory), directory
    tokenizer = Tokenizer.from_dir(directory)
    if tp is not None:
        from inference.parallel.tensor_parallel import shard

        return shard(load_model(directory, dtype=dtype, device=device).eval(), *tp), tokenizer, directory
    # the CPU's dense weights are prepared once (quantized, plus bf16 copies where prefill runs in bf16) and
    # memory-mapped on later starts
    prefill = prefill_dtype()
    cached = weights_cache.entry_path(directory, spec.quantize_mode(), dtype, prefill) if device == "cpu" else None
    model = weights_cache.load(cached) if cached and spec.engine.weights == "dense" else None
    if model is not None:
        return model, tokenizer, directory
    if gguf is not None:
        from inference.weights.gguf import strip_block_weights, use_gguf_weights

        # the projections that go to blocks are never loaded dense: the device holds the blocks and the rest only
        model = load_model(directory, dtype=dtype, device=device, strip=lambda m: strip_block_weights(m, gguf))
        use_gguf_weights(model.eval(), gguf, torch.device(device))
        return model, tokenizer, directory
    model = load_model(directory, dtype=dtype, device=device).eval()
    if device == "cpu":
        # a vision-language model's tower and projector run once per image, like a prefill: they stay float
        prepare_cpu(getattr(model, "language_model", model), spec.quantize_mode(), prefill)
        weights_cache.save(model, cached)
    return model, tokenizer, directory


def prepare_cpu(model: torch.nn.Module, mode: str, prefill: str | None = None) -> None:
    """Make ``model``'s layers batch invariant on the CPU, in place: quantized in ``mode`` (prompt rows in the
    ``prefill`` dtype), or under ``none`` float layers whose rows do not depend on the row count."""
    if mode == "none":
        from inference.weights.unquantized import keep_float

        keep_float(model)
        return
    from inference.weights.quantize import quantize

    quantize(model, mode, prefill=prefill or prefill_dtype())


def load(spec: ModelSpec, metrics: Metrics, engines: EngineLoop, ranks=None) -> LoadedModel:
    """Load one model and add its engine to ``engines`` (the loop that steps it); ``ranks``: the other processes
    of a tensor-parallel model (``inference.server.tensor_parallel``), this one rank 0."""
    from inference.tokenizer.detokenizer import IncrementalDetokenizer

    start = time.perf_counter()
    model, tokenizer, directory = build_model(spec, None if ranks is None else (0, ranks.size))
    float_rows = spec.quantize_mode() == "none" and spec.kind != "tts"  # VITS: convolutions, one utterance a pass
    if spec.engine.resolved_device() == "cpu" and float_rows and ranks is None:
        from inference.weights.unquantized import check_rows

        check_rows(model)  # now, not at the first request (seconds for a large head)
    speech = None
    if spec.kind in ("embedding", "rerank"):
        if spec.kind == "rerank" and not hasattr(model, "scores"):
            raise ConfigError(f"model {spec.id}: kind rerank needs a cross-encoder (*ForSequenceClassification)")
        if spec.kind == "embedding" and hasattr(model, "scores"):
            raise ConfigError(f"model {spec.id}: a cross-encoder scores pairs; serve it as kind rerank, not embedding")
        use_kernels(model, spec.engine.resolved_kernels())
        engine = EmbeddingEngine(model, spec.engine.max_batched_tokens)
        max_len, max_out = engine.max_model_len, 0
        hidden = model.config.hidden_size if spec.kind == "embedding" else 0  # a reranker returns no vectors
    elif spec.kind == "tts":
        from inference.engine.synthesis_engine import SynthesisEngine

        engine = SynthesisEngine(model)
        max_len = hidden = max_out = 0
    elif spec.kind == "audio":
        from inference.engine.speech_engine import SpeechEngine

        use_kernels(model, spec.engine.resolved_kernels())
        engine = SpeechEngine(model, tokenizer, max_rows=min(spec.engine.max_num_seqs, 16))
        speech = SpeechSupport(tokenizer, model.config.num_mel_bins)
        max_len, hidden, max_out = engine.max_model_len, 0, engine.max_model_len
    else:
        if hasattr(model, "new_state") or hasattr(model, "synthesize"):
            serves = "audio" if hasattr(model, "new_state") else "tts"
            raise ConfigError(f"model {spec.id}: a speech checkpoint serves kind {serves}, not {spec.kind}")

        def detokenizer(tok, prompt_ids):
            return IncrementalDetokenizer(tok, prompt_ids)

        engine = LLMEngine(model, tokenizer, detokenizer, spec.engine)
        if ranks is not None:
            ranks.drive(engine)
        max_len, hidden = engine.max_model_len, 0
        max_out = min(spec.max_output_length or max_len, max_len)
    vision = _vision_support(spec, model, tokenizer, directory) if spec.kind == "vision" else None
    worker = engines.add(engine, spec.id, on_step=metrics.on_step(spec.id))
    guides, tool_format, reasoning = None, "hermes", None
    if spec.kind not in ("embedding", "rerank", "audio", "tts"):
        from inference.engine.guided import GuideCompiler
        from inference.function_calling.formats import ALIASES, detect_format
        from inference.server.reasoning import detect

        reasoning = detect(tokenizer) if spec.reasoning == "auto" else None

        guides = GuideCompiler(tokenizer.tokenizer_json, tokenizer.stop_token_ids, model.config.vocab_size)
        tool_format = spec.tool_call_format
        if tool_format == "auto":
            tool_format = detect_format(tokenizer.chat_template)
        tool_format = ALIASES.get(tool_format, tool_format)
    guard = _guard(spec, tokenizer, guides) if spec.kind == "moderation" else None
    seconds = time.perf_counter() - start
    log.info("loaded %s from %s in %.1fs", spec.id, directory, seconds)
    loaded = LoadedModel(
        spec=spec,
        tokenizer=tokenizer,
        engine=engine,
        worker=worker,
        max_model_len=max_len,
        max_output_length=max_out,
        hidden_size=hidden,
        vocab_size=model.config.vocab_size,
        created=int(time.time()),
        tool_format=tool_format,
        guides=guides,
        reasoning=reasoning,
        vision=vision,
        speech=speech,
        guard=guard,
        load_seconds=round(seconds, 2),
    )
    loaded.adapters = _adapters(loaded, model)
    return loaded


def _guard(spec: ModelSpec, tokenizer, guides) -> GuardFormat:
    """A moderation model's categories, read from a conversation its chat template renders, and the grammar of its
    verdicts compiled (every request's answer follows it)."""

    def render(messages: list[dict]) -> str:
        return tokenizer.decode(tokenizer.apply_chat_template(messages, add_generation_prompt=True),
                                skip_special_tokens=False)  # fmt: skip

    try:
        guard = detect(render) if tokenizer.chat_template else None
    except ValueError as exc:  # the template refused the probe conversation
        raise ConfigError(f"model {spec.id}: its chat template cannot render a user message: {exc}") from None
    if guard is None:
        raise ConfigError(f"model {spec.id}: kind moderation needs a guard model (Llama Guard) whose chat template "
                          "lists its unsafe-content categories")  # fmt: skip
    try:
        return dataclasses.replace(guard, guide=guides.compile(guard.grammar()))
    except GrammarError as exc:
        raise ConfigError(f"model {spec.id}: its categories' codes make no verdict grammar: {exc}") from None


def _adapters(base: LoadedModel, model: torch.nn.Module) -> list[LoadedModel]:
    """Each of ``base``'s LoRA adapters attached to its model at a slot of its own, as a model entry of its own."""
    from inference.loader.lora import attach

    out = []
    for slot, (name, path) in enumerate(sorted(base.spec.lora_modules.items())):
        targets = attach(model, Path(path).expanduser(), slot)
        log.info("LoRA adapter %s on %s: %d projections (%s)", name, base.id, targets, path)
        out.append(base.adapter(name, slot, str(path)))
    return out


class ModelRegistry:
    def __init__(self, models: list[LoadedModel]):
        self.bases = list(models)  # one engine each; their adapters share it
        self.models = {m.id: m for base in models for m in (base, *base.adapters)}
        # adapters loaded at run time take slots never used before (the prefix cache keys blocks by slot)
        self._slots = itertools.count(max((len(b.adapters) for b in models), default=0))

    def next_lora_slot(self) -> int:
        return next(self._slots)

    def get(self, model_id) -> LoadedModel:
        if not isinstance(model_id, str) or model_id not in self.models:
            raise model_not_found(str(model_id))
        return self.models[model_id]

    def stop(self) -> None:
        for model in self.bases:
            model.worker.stop()
