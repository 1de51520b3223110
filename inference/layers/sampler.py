"""Batched sampling with per-sequence settings: the torch path, and ``kernels.sampling`` for the rows that
sample with the kernels on.

Order (as vLLM / OpenAI): logit_bias and penalties on the raw logits, then temperature, top-k,
top-p, min-p, then a draw. Logprobs are reported from the model's raw distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.sampling_params import SamplingParams


@dataclass
class SampleResult:
    token_ids: list[int]
    # per row: (chosen logprob, [(token, logprob)] top-k) or None when not asked for
    logprobs: list[tuple[float, list[tuple[int, float]]] | None]


def _apply_penalties(logits: torch.Tensor, params: SamplingParams, prompt: list[int], output: list[int]) -> None:
    """In place on one row: repetition over prompt+output, presence/frequency over the output."""
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt) | set(output)), dtype=torch.long, device=logits.device)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / params.repetition_penalty, values * params.repetition_penalty)
    if output and (params.presence_penalty or params.frequency_penalty):
        ids, counts = torch.unique(torch.tensor(output, dtype=torch.long, device=logits.device), return_counts=True)
        logits[ids] -= params.frequency_penalty * counts.to(logits.dtype) + params.presence_penalty


def _filter(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature-scaled logits of one row with top-k / top-p / min-p applied (-inf elsewhere)."""
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p; the first always stays, so top_p = 0
        # keeps the most likely token only (OpenAI accepts 0) instead of dropping every token
        drop = (probs.cumsum(-1) - probs) >= params.top_p
        drop[0] = False
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    if params.min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
    return logits


def _uniform(gen: torch.Generator | None) -> float:
    """One draw in [0, 1): from the request's own generator when it is seeded (reproducible anywhere)."""
    return float(torch.rand(1, generator=gen)) if gen is not None else float(torch.rand(1))


def _sample_with_kernel(logits: torch.Tensor, rows: list[int], params: list[SamplingParams], generators) -> list[int]:
    """Temperature / top-k / top-p / min-p rows in one Triton kernel call over the full vocabulary (no sort)."""
    from kernels.sampling import top_k_top_p_sample

    device = logits.device

    def column(values, dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    chosen = [params[i] for i in rows]
    ids = top_k_top_p_sample(
        logits[rows].contiguous(),
        column([p.temperature for p in chosen], torch.float32),
        column([p.top_k for p in chosen], torch.int32),
        column([p.top_p for p in chosen], torch.float32),
        column([_uniform(generators[i]) for i in rows], torch.float32),
        min_p=column([p.min_p for p in chosen], torch.float32),
    )
    return ids.tolist()


def _keep_only(row: torch.Tensor, ids: list[int]) -> None:
    """In place on one row [V]: -inf but at ``ids`` (vLLM's allowed_token_ids), unless none of them may be taken
    (a grammar's mask excludes them all): then the grammar's choice stands."""
    keep = torch.tensor(ids, dtype=torch.long, device=row.device)
    kept = row[keep]
    if bool(torch.isfinite(kept).any()):
        row.fill_(float("-inf"))
        row[keep] = kept


def _ban(row: torch.Tensor, ids: list[int]) -> None:
    """In place on one row [V]: -inf at ``ids``, unless nothing would be left to take (a request whose own
    constraints conflict, e.g. allowed_token_ids that are all ends while short of min_tokens): then unchanged."""
    index = torch.tensor(ids, dtype=torch.long, device=row.device)
    before = row[index]
    row[index] = float("-inf")
    if not bool(torch.isfinite(row).any()):
        row[index] = before


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    histories: list[tuple[list[int], list[int]]],
    generators: list[torch.Generator | None],
    kernels: bool = False,
    allowed: tuple[list[int], torch.Tensor] | None = None,
    banned: list[list[int]] | None = None,
) -> SampleResult:
    """logits: [N, vocab] float32, one row per sequence; histories: (prompt ids, output ids). With ``kernels``,
    the rows that sample (not greedy) go through the Triton sampling kernel.
    ``allowed``: (rows, [len(rows), V] bool) the only tokens those rows may take (constrained decoding); logprobs
    stay those of the model's own distribution. ``banned``: per row, the ids it may not take this step (the ends of
    a sequence short of its ``min_tokens``, the last token of a bad word it is writing), or empty. A row's own
    ``allowed_token_ids`` apply too; bans never leave a row nothing to take (then they are lifted for the step)."""
    raw = logits
    if (allowed is not None or banned is not None
            or any(p.logit_bias or p.needs_penalties or p.allowed_token_ids is not None for p in params)):  # fmt: skip
        logits = logits.clone()  # changed in place below; plain rows (greedy or sampled) read the raw logits
    if allowed is not None:
        rows, masks = allowed
        vocab = logits.shape[1]
        if masks.shape[1] < vocab:  # ids past the grammar's tokenizer are never allowed
            masks = torch.nn.functional.pad(masks, (0, vocab - masks.shape[1]), value=False)
        masks = masks[:, :vocab].to(logits.device)
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        logits[index] = logits[index].masked_fill(~masks, float("-inf"))
    tokens: list[int] = []
    deferred: list[int] = []  # rows the kernel samples, after the loop
    for i, p in enumerate(params):
        row = logits[i]
        if p.logit_bias:
            ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=row.device)
            row[ids] += torch.tensor(list(p.logit_bias.values()), dtype=row.dtype, device=row.device)
        if p.needs_penalties:
            _apply_penalties(row, p, *histories[i])
        if p.allowed_token_ids is not None:
            _keep_only(row, p.allowed_token_ids)
        if banned is not None and banned[i]:
            _ban(row, banned[i])
        if p.greedy:
            tokens.append(int(row.argmax()))
            continue
        if kernels:
            tokens.append(-1)
            deferred.append(i)
            continue
        probs = _filter(row, p).softmax(-1)
        gen = generators[i]
        if gen is not None and gen.device != probs.device:  # seeds live on the CPU: same draw on any device
            probs = probs.to(gen.device)
        tokens.append(int(torch.multinomial(probs, 1, generator=gen)))
    if deferred:
        for i, token in zip(deferred, _sample_with_kernel(logits, deferred, params, generators), strict=True):
            tokens[i] = token

    logprobs: list[tuple[float, list[tuple[int, float]]] | None] = [None] * len(params)
    wanted = [i for i, p in enumerate(params) if p.logprobs is not None]
    if wanted:
        lp = torch.log_softmax(raw[wanted], dim=-1)
        for row, i in enumerate(wanted):
            k = params[i].logprobs or 0
            top: list[tuple[int, float]] = []
            if k:
                values, ids = torch.topk(lp[row], k)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
            logprobs[i] = (float(lp[row, tokens[i]]), top)
    return SampleResult(token_ids=tokens, logprobs=logprobs)
