"""The generation engine: requests in, one scheduler step at a time, per-sequence deltas out.

Synchronous and single-threaded by design; ``engine/worker.py`` steps it on the process's main thread (one loop
for every model) and hands its deltas to the asyncio server on another. Requests join and leave between steps
(continuous batching).
"""

from __future__ import annotations

import logging
import time

import torch

from inference.config import EngineConfig
from inference.engine.block_manager import BlockManager
from inference.engine.guided import MaskFiller
from inference.engine.kv_budget import cuda_kv_tokens, describe_kv_cache
from inference.engine.model_runner import ModelRunner
from inference.engine.output import OutputProcessor, SeqDelta
from inference.engine.scheduler import Scheduler
from inference.engine.sequence import Sequence, TokenLogprob
from inference.layers.kernel_switch import use_kernels
from inference.layers.sampler import sample
from inference.models.inputs import MultiModalPrompt
from inference.sampling_params import SamplingParams

log = logging.getLogger("inference.engine")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_limits(model_config, cfg: EngineConfig, measured_kv_tokens: int | None = None) -> tuple[int, int]:
    """(max_model_len, kv cache tokens) from the model's context length and the engine settings; on CUDA the
    cache defaults to what the GPU's memory holds (``measured_kv_tokens``)."""
    context = getattr(model_config, "context_length", model_config.max_position_embeddings)  # rope-stretched
    kv_tokens = cfg.kv_cache_tokens or measured_kv_tokens or min(context, 32768)
    max_len = min(cfg.max_model_len or context, context, kv_tokens)
    return max_len, kv_tokens


class LLMEngine:
    def __init__(self, model: torch.nn.Module, tokenizer, detokenizer_factory, cfg: EngineConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.detokenizer_factory = detokenizer_factory  # (tokenizer, prompt_ids) -> IncrementalDetokenizer
        self.cfg = cfg
        device = next(model.parameters()).device
        kernels = cfg.resolved_kernels()
        use_kernels(model, kernels)
        measured = None
        if device.type == "cuda" and cfg.kv_cache_tokens is None:
            measured = cuda_kv_tokens(model, _DTYPES[cfg.resolved_dtype()], cfg, device)
        self.max_model_len, kv_tokens = resolve_limits(model.config, cfg, measured)
        self.blocks = BlockManager(-(-kv_tokens // cfg.block_size), cfg.block_size, cfg.enable_prefix_caching)
        self.scheduler = Scheduler(self.blocks, cfg.max_num_seqs, cfg.max_batched_tokens)
        graphs_for = (cfg.max_num_seqs, self.max_model_len) if cfg.cuda_graphs else None
        self.runner = ModelRunner(
            model,
            self.blocks,
            _DTYPES[cfg.resolved_dtype()],
            device,
            kernels=kernels,
            graphs_for=graphs_for,
            fused_decode=cfg.fused_decode,
        )
        log.info("%s", describe_kv_cache(model, _DTYPES[cfg.resolved_dtype()], kv_tokens))
        self.stop_token_ids = set(tokenizer.stop_token_ids)
        self.masks = MaskFiller()
        self.outputs: dict[int, OutputProcessor] = {}
        self.requests: dict[str, list[Sequence]] = {}

    # --- requests ----------------------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        n: int = 1,
        mm: MultiModalPrompt | None = None,
    ) -> None:
        """``mm``: the prompt's images (a vision model; their image tokens are already in ``prompt_ids``)."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        if mm is not None and not hasattr(self.model, "encode_images"):
            raise ValueError("this model does not take images")
        now = time.monotonic()
        seqs = []
        for i in range(n):
            seq = Sequence(request_id, i, prompt_ids, params, mm)
            seq.arrival = now
            if i and self.blocks.caching:  # the prompt is computed once, by the first, then cached for the others
                seq.leader = seqs[0]
            detokenizer = self.detokenizer_factory(self.tokenizer, prompt_ids)
            if params.keep_special_ids:
                detokenizer.keep_special_ids = params.keep_special_ids
            self.outputs[seq.seq_id] = OutputProcessor(seq, detokenizer, self.stop_token_ids, self.max_model_len)
            self.scheduler.add(seq)
            seqs.append(seq)
        self.requests[request_id] = seqs

    def abort(self, request_id: str) -> list[SeqDelta]:
        """Free the request's sequences now; returns their final deltas (reason "abort")."""
        deltas = []
        for seq in self.requests.pop(request_id, []):
            if not seq.is_finished:
                self.scheduler.finish(seq, "abort")
                deltas.append(self.outputs[seq.seq_id].finish_now("abort"))
            self.outputs.pop(seq.seq_id, None)
        return deltas

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    # --- one step ----------------------------------------------------------------------------------

    def step(self) -> list[SeqDelta]:
        step = self.scheduler.schedule()
        if not step.seqs:
            return []
        # constrained sequences that sample this step: their masks are computed while the model runs
        guided = [
            seq for seq, n in zip(step.seqs, step.num_new_tokens, strict=True)
            if seq.matcher is not None and seq.guide_state != "thinking" and seq.num_computed + n == seq.num_tokens
        ]  # fmt: skip
        masks = self.masks.start([s.matcher for s in guided], guided[0].params.guide.vocab_size) if guided else None
        result = self.runner.run(step)
        for seq, n in zip(step.seqs, step.num_new_tokens, strict=True):
            seq.num_computed += n
            self.blocks.register(seq)
        deltas: list[SeqDelta] = []
        for seq in step.seqs:
            if seq.seq_id in result.prompt_logits:
                first, logits = result.prompt_logits[seq.seq_id]
                self._record_prompt_logprobs(seq, first, logits)
        if result.sample_seqs:
            allowed = None
            if masks is not None:
                row = {s.seq_id: i for i, s in enumerate(result.sample_seqs)}
                mask = self._may_think(guided, masks.result())
                allowed = ([row[s.seq_id] for s in guided], self._never_empty(mask))
            sampled = sample(
                result.logits,
                [s.params for s in result.sample_seqs],
                [(s.prompt_ids, s.output_ids) for s in result.sample_seqs],
                [s.generator for s in result.sample_seqs],
                kernels=self.runner.kernels,
                allowed=allowed,
            )
            now = time.monotonic()
            for seq, token, lp in zip(result.sample_seqs, sampled.token_ids, sampled.logprobs, strict=True):
                if seq.first_token_at is None:
                    seq.first_token_at = now
                seq.output_ids.append(token)
                if lp is not None:
                    seq.logprobs.append(TokenLogprob(token, lp[0], lp[1]))
                delta = self.outputs[seq.seq_id].on_token(token)
                if seq.matcher is not None and not delta.finish_reason and not self._advance(seq, token):
                    end = self.outputs[seq.seq_id].finish_now("stop")  # the grammar is complete
                    delta.text += end.text
                    delta.finish_reason = "stop"
                if seq.params.prompt_logprobs and len(seq.output_ids) == 1:
                    delta.prompt_logprobs = seq.prompt_logprobs
                if delta.finish_reason:
                    self.scheduler.finish(seq, delta.finish_reason)
                    self._forget(seq)
                deltas.append(delta)
        return deltas

    def _never_empty(self, masks: torch.Tensor) -> torch.Tensor:
        """A grammar at a dead end allows nothing: let those sequences stop instead of sampling from nothing."""
        empty = ~masks.any(dim=1)
        if bool(empty.any()):
            stops = torch.tensor(sorted(i for i in self.stop_token_ids if i < masks.shape[1]), dtype=torch.long)
            masks[empty.nonzero().flatten().unsqueeze(1), stops.unsqueeze(0)] = True
        return masks

    @staticmethod
    def _may_think(guided: list[Sequence], masks: torch.Tensor) -> torch.Tensor:
        """A reasoning model's first token may open its think block as well as start the grammar's answer."""
        for i, seq in enumerate(guided):
            if seq.guide_state == "undecided" and seq.params.think.start_id < masks.shape[1]:
                masks[i, seq.params.think.start_id] = True
        return masks

    @staticmethod
    def _advance(seq: Sequence, token: int) -> bool:
        """Feed the sampled token to the sequence's grammar; False when the grammar allows nothing more. Inside a
        think block the grammar waits: it starts with the token after the block's end."""
        if seq.guide_state != "on":
            think = seq.params.think
            if seq.guide_state == "undecided" and token == think.start_id:
                seq.guide_state = "thinking"
                return True
            if seq.guide_state == "thinking":
                if token == think.end_id:
                    seq.guide_state = "on"
                return True
            seq.guide_state = "on"  # the answer began at once: this token is the grammar's
        if not seq.matcher.consume_token(token):
            log.warning("request %s: token %d rejected by its grammar: %s", seq.request_id, token,
                        seq.matcher.get_error())  # fmt: skip
            return False
        return not seq.matcher.is_stopped()

    def _record_prompt_logprobs(self, seq: Sequence, first: int, logits: torch.Tensor) -> None:
        """logits[j] predicts prompt token first + j + 1; the very first prompt token has none."""
        if first == 0:
            seq.prompt_logprobs.append(None)
        lp = torch.log_softmax(logits.float(), dim=-1)
        k = seq.params.logprobs or 0
        for j in range(lp.shape[0]):
            target = first + j + 1
            if target >= seq.num_prompt:
                break
            token = seq.prompt_ids[target]
            top = []
            if k:
                values, ids = torch.topk(lp[j], k)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
            seq.prompt_logprobs.append(TokenLogprob(token, float(lp[j, token]), top))

    def _forget(self, seq: Sequence) -> None:
        self.outputs.pop(seq.seq_id, None)
        seqs = self.requests.get(seq.request_id, [])
        if all(s.is_finished for s in seqs):
            self.requests.pop(seq.request_id, None)
