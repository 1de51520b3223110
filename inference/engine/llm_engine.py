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
from inference.engine.guided import MaskFiller, advance, may_think, never_empty
from inference.engine.kv_budget import cuda_kv_tokens, describe_kv_cache
from inference.engine.model_runner import ModelRunner, StepLogits
from inference.engine.output import OutputProcessor, RequestFailed, SeqDelta
from inference.engine.quarantine import EngineBroken, Quarantine
from inference.engine.scheduler import ScheduledStep, Scheduler
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
        self.quarantine = Quarantine()
        self.failed_steps = 0  # steps that raised (their requests ran again, alone)

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
            detokenizer.skip_special_tokens = params.skip_special_tokens
            self.outputs[seq.seq_id] = OutputProcessor(seq, detokenizer, self.stop_token_ids, self.max_model_len)
            self.scheduler.add(seq)
            seqs.append(seq)
        self.requests[request_id] = seqs

    def abort(self, request_id: str) -> list[SeqDelta]:
        """Free the request's sequences now; returns their final deltas (reason "abort")."""
        deltas = []
        self.quarantine.clear(request_id)
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

    def step(self) -> list[SeqDelta | RequestFailed]:
        """One step's deltas; a request that failed in it gets a ``RequestFailed`` instead (``quarantine.py``)."""
        step, suspect = self._schedule()
        if not step.seqs:
            return []
        try:
            result, sampled = self._compute(step)
        except EngineBroken:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing of the step is committed: its requests can run again
            request_ids = list(dict.fromkeys(seq.request_id for seq in step.seqs))
            more = f" and {len(request_ids) - 8} more" if len(request_ids) > 8 else ""
            log.error("a step over request(s) %s%s failed", ", ".join(request_ids[:8]), more, exc_info=exc)
            self.failed_steps += 1
            culprit = self.quarantine.on_failure(request_ids)
            return [] if culprit is None else [self._fail(culprit, exc)]
        tokens = dict(zip((s.seq_id for s in result.sample_seqs), sampled, strict=True))
        now = time.monotonic()
        deltas: list[SeqDelta | RequestFailed] = []
        for seq, n in zip(step.seqs, step.num_new_tokens, strict=True):
            if seq.is_finished:  # its request failed with another of its sequences, just before
                continue
            try:
                delta = self._commit(seq, n, result, tokens.get(seq.seq_id), now)
            except Exception as exc:  # noqa: BLE001 - this sequence's own work (its text, its grammar): fail its request
                log.error("request %s failed", seq.request_id, exc_info=exc)
                deltas.append(self._fail(seq.request_id, exc))
                continue
            if delta is not None:
                deltas.append(delta)
        if suspect is not None:  # it ran alone and did not fail the step: cleared (if it failed, it is gone)
            self.quarantine.clear(suspect)
        return deltas

    def _schedule(self) -> tuple[ScheduledStep, str | None]:
        """The next step, and the suspect it runs alone while a failed step's requests are suspected (else None)."""
        while (suspect := self.quarantine.current()) is not None:
            step = self.scheduler.schedule(only=suspect)
            if step.seqs:
                return step, suspect
            self.quarantine.clear(suspect)  # it can not run now: it is not held up for its test
        return self.scheduler.schedule(), None

    def _compute(self, step: ScheduledStep) -> tuple[StepLogits, list[tuple[int, tuple | None]]]:
        """The forward pass and the samples ((token, logprobs) per sampled sequence), changing no sequence."""
        # constrained sequences that sample this step: their masks are computed while the model runs
        guided = [
            seq for seq, n in zip(step.seqs, step.num_new_tokens, strict=True)
            if seq.matcher is not None and seq.guide_state != "thinking" and seq.num_computed + n == seq.num_tokens
        ]  # fmt: skip
        masks = self.masks.start([s.matcher for s in guided], guided[0].params.guide.vocab_size) if guided else None
        result = self.runner.run(step)
        if not result.sample_seqs:
            return result, []
        allowed = None
        if masks is not None:
            row = {s.seq_id: i for i, s in enumerate(result.sample_seqs)}
            mask = may_think(guided, masks.result())
            allowed = ([row[s.seq_id] for s in guided], never_empty(mask, self.stop_token_ids))
        generators = [s.generator for s in result.sample_seqs]
        # per row, what it may not draw: the ends while short of min_tokens (a grammar's ends with it), bad words
        banned = None
        if any(len(s.output_ids) < s.params.min_tokens or s.params.bad_words_ids for s in result.sample_seqs):
            banned = [self.outputs[s.seq_id].banned(ends=s.matcher is None) for s in result.sample_seqs]
        # a seed's draws so far (5 KB each): if the sampler fails after some rows drew, the retry draws them again
        seeded = [(g, g.get_state()) for g, s in zip(generators, result.sample_seqs, strict=True)
                  if g is not None and not s.params.greedy]  # fmt: skip
        try:
            sampled = sample(
                result.logits,
                [s.params for s in result.sample_seqs],
                [(s.prompt_ids, s.output_ids) for s in result.sample_seqs],
                generators,
                kernels=self.runner.kernels,
                allowed=allowed,
                banned=banned,
            )
        except Exception:
            for generator, state in seeded:
                generator.set_state(state)
            raise
        return result, list(zip(sampled.token_ids, sampled.logprobs, strict=True))

    def _commit(self, seq: Sequence, n: int, result: StepLogits, sampled: tuple | None, now: float) -> SeqDelta | None:
        """``seq``'s part of a step that ran: its ``n`` tokens computed, its prompt logprobs, its sampled token."""
        seq.num_computed += n
        self.blocks.register(seq)
        if seq.seq_id in result.prompt_logits:
            first, logits = result.prompt_logits[seq.seq_id]
            self._record_prompt_logprobs(seq, first, logits)
        if sampled is None:  # a chunk of its prompt, not the last
            return None
        token, lp = sampled
        if seq.first_token_at is None:
            seq.first_token_at = now
        seq.output_ids.append(token)
        if lp is not None:
            seq.logprobs.append(TokenLogprob(token, lp[0], lp[1]))
        delta = self.outputs[seq.seq_id].on_token(token)
        if seq.matcher is not None and not delta.finish_reason and not advance(seq, token):
            end = self.outputs[seq.seq_id].finish_now("stop")  # the grammar is complete
            delta.text += end.text
            delta.finish_reason = "stop"
        if seq.params.prompt_logprobs is not None and len(seq.output_ids) == 1:
            delta.prompt_logprobs = seq.prompt_logprobs
        if delta.finish_reason:
            self.scheduler.finish(seq, delta.finish_reason)
            self._forget(seq)
        return delta

    def _fail(self, request_id: str, error: Exception) -> RequestFailed:
        self.abort(request_id)
        return RequestFailed(request_id, error)

    def _record_prompt_logprobs(self, seq: Sequence, first: int, logits: torch.Tensor) -> None:
        """logits[j] predicts prompt token first + j + 1; the very first prompt token has none."""
        if first == 0:
            seq.prompt_logprobs.append(None)
        lp = torch.log_softmax(logits.float(), dim=-1)
        k = seq.params.prompt_logprobs or 0
        for j in range(lp.shape[0]):
            target = first + j + 1
            if target >= seq.num_prompt:
                break
            token = seq.prompt_ids[target]
            top = []
            if k:
                values, ids = torch.topk(lp[j], k)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
            rank = int((lp[j] > lp[j, token]).sum()) + 1  # vLLM's prompt_logprobs name it
            seq.prompt_logprobs.append(TokenLogprob(token, float(lp[j, token]), top, rank))

    def _forget(self, seq: Sequence) -> None:
        self.outputs.pop(seq.seq_id, None)
        seqs = self.requests.get(seq.request_id, [])
        if all(s.is_finished for s in seqs):
            self.requests.pop(seq.request_id, None)
