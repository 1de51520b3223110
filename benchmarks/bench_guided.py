"""What constrained decoding costs: llguidance's mask per token, and SmolLM2-135M decode steps with and without
grammars in the batch (the masks are computed on a side thread during the forward pass).

    .venv/bin/python benchmarks/bench_guided.py [--batch 8] [--tokens 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engine.guided import GuideCompiler, MaskFiller  # noqa: E402
from inference.function_calling.formats import FORMATS  # noqa: E402
from inference.function_calling.grammar import build_grammar  # noqa: E402
from inference.function_calling.request import read_tool_request  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from tests.support.models import make_engine  # noqa: E402
from tests.support.samples import TOOLS  # noqa: E402

CALL = (
    '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Hamburg", "format": "celsius"}}'
    "\n</tool_call>"
)


def mask_times(compiler: GuideCompiler, grammar: str) -> list[float]:
    """Microseconds to fill one mask, token by token along a canned call."""
    guide = compiler.compile(grammar)
    matcher, filler = guide.matcher(), MaskFiller()
    times = []
    for token in compiler.tokenizer.tokenize_str(CALL):
        start = time.perf_counter()
        filler.start([matcher], guide.vocab_size).result()
        times.append((time.perf_counter() - start) * 1e6)
        matcher.consume_token(token)
    return times


def decode_ms(engine, prompt, guide, batch: int, constrained: int, tokens: int) -> float:
    """Median decode step (ms) of ``batch`` sequences, ``constrained`` of them under the grammar."""
    for i in range(batch):
        params = SamplingParams(max_tokens=tokens, temperature=1.0, seed=i, ignore_eos=True,
                                guide=guide if i < constrained else None)  # fmt: skip
        engine.add_request(f"r{i}", prompt, params)
    steps = []
    while engine.has_work:
        start = time.perf_counter()
        engine.step()
        steps.append(time.perf_counter() - start)
    return statistics.median(steps[2:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = make_engine("smollm2", kv_cache_tokens=16384, max_num_seqs=args.batch)
    tok = engine.tokenizer
    compiler = GuideCompiler(tok.tokenizer_json, tok.stop_token_ids, engine.model.config.vocab_size)
    required = read_tool_request({"tools": TOOLS, "tool_choice": "required"})
    grammar = build_grammar(required, FORMATS["hermes"], {}, compiler.check)
    start = time.perf_counter()
    compiler.compile(grammar)
    print(f"grammar compile (2 tools, hermes, required): {(time.perf_counter() - start) * 1e3:.2f} ms")
    times = mask_times(compiler, grammar)
    print(f"mask per token over {len(times)} tokens: median {statistics.median(times):.0f} us, "
          f"max {max(times):.0f} us (vocabulary {compiler.tokenizer.vocab_size})")  # fmt: skip
    prompt = tok.apply_chat_template([{"role": "user", "content": "What's the weather in Hamburg?"}])
    # a grammar that never ends, so that every constrained sequence decodes all its tokens like the free ones
    endless = compiler.compile(r"start: /(.|\n)*/")
    for constrained, g in ((0, None), (args.batch // 2, endless), (args.batch, endless)):
        runs = [decode_ms(engine, prompt, g, args.batch, constrained, args.tokens) for _ in range(args.rounds)]
        print(f"decode step, batch {args.batch}, {constrained} under a grammar: {statistics.median(runs):.2f} ms")
    print("reproduce: .venv/bin/python benchmarks/bench_guided.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
