"""What batch invariance costs a model served unquantized (``quantize = "none"``, fp32 everywhere, on the CPU).

Each packaged chat / completion model built as the service builds it under ``none`` (every Linear and the tied head a
``FloatLinear``), run through the engine two ways, alternating, medians:

- ``plain``: each ``FloatLinear`` a plain ``F.linear`` (as the service ran ``none`` before: a row's bits followed the
  row count);
- ``invariant``: as served now (``row_blocks.float_linear``: a few rows padded to a count that keeps a row's bits).

For each batch size, decode tok/s (``--batch`` greedy requests of ``--tokens`` tokens each, started together, the
prefill step left out) and, once per model, whether the answers are batch invariant each way (eight prompts alone and
then all at once in 5-token prefill chunks: the share whose tokens and logprobs are bit for bit the same).

    .venv/bin/python benchmarks/bench_unquantized.py [--rounds 5] [--batch 1 4 16] [--tokens 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_quality import INVARIANCE_PROMPTS, greedy  # noqa: E402

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.weights import unquantized  # noqa: E402

WAYS = {"plain": lambda x, weight: F.linear(x, weight), "invariant": unquantized.float_linear}


def decode_tok_s(model, tokenizer, batch: int, tokens: int) -> float:
    """Generated tokens per second over the steps after the first (which prefills the ``batch`` prompts)."""
    config = EngineConfig(kv_cache_tokens=4096, max_num_seqs=max(batch, 1), enable_prefix_caching=False)
    engine = LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), config)
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    for i in range(batch):
        engine.add_request(str(i), tokenizer.encode(INVARIANCE_PROMPTS[i % len(INVARIANCE_PROMPTS)]), params)
    engine.step()  # the prefill and each request's first token
    start, generated = time.perf_counter(), 0
    while engine.has_work:
        generated += sum(len(d.token_ids) for d in engine.step())
    return generated / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads; decode tok/s, median of {args.rounds} (the two ways alternating)")
    for spec in (s for s in DEFAULT_MODELS if s.kind in ("chat", "completion")):
        spec = dataclasses.replace(spec, engine=dataclasses.replace(spec.engine, quantize="none"))
        model, tokenizer, _ = build_model(spec)
        same = {}
        for way, product in WAYS.items():
            unquantized.float_linear = product
            alone = greedy(model, tokenizer, INVARIANCE_PROMPTS, 32)
            together = greedy(model, tokenizer, INVARIANCE_PROMPTS, 32, together=True)
            same[way] = sum(alone[k] == together[k] for k in alone) / len(alone)
        print(f"\n{spec.id}: prompts with the same tokens and logprobs alone and batched: "
              + ", ".join(f"{way} {share:.0%}" for way, share in same.items()))  # fmt: skip
        print(f"{'batch':>5} " + " ".join(f"{way:>10}" for way in WAYS) + f" {'ratio':>6}")
        for batch in args.batch:
            rates: dict[str, list[float]] = {way: [] for way in WAYS}
            for _ in range(args.rounds + 1):  # the first round warms up, not counted
                for way, product in WAYS.items():
                    unquantized.float_linear = product
                    rates[way].append(decode_tok_s(model, tokenizer, batch, args.tokens))
            medians = [statistics.median(r[1:]) for r in rates.values()]
            print(f"{batch:5d} " + " ".join(f"{m:10.1f}" for m in medians) + f" {medians[1] / medians[0]:6.2f}")
        unquantized.float_linear = WAYS["invariant"]
    print("\nreproduce: .venv/bin/python benchmarks/bench_unquantized.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
