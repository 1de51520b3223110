"""What each CPU quantize mode costs in quality, against fp32, on the packaged models; and which modes keep answers
independent of the batch.

    .venv/bin/python benchmarks/bench_quality.py [--models smollm2 gemma3] [--modes int8 int4 int4x2 auto] \
        [--tokens 256]

Generative models (SmolLM2-135M-Instruct, Gemma 3 270M), for fp32 (``none``) and every mode:

- perplexity on ``benchmarks/data/alice.txt`` (the opening of Lewis Carroll's *Alice's Adventures in Wonderland*,
  1865, public domain), teacher-forced in one pass: through the prefill path (the bf16 copies, as a prompt runs)
  and through the decode kernels (every row on the quantized kernel, as generated tokens run);
- greedy agreement with fp32 over ``--tokens`` tokens from four prompts: how many tokens match before the first
  difference (mean of the four), and the share of positions that match;
- batch invariance: eight prompts, 64 greedy tokens each, run alone and then all at once in 5-token prefill
  chunks: the share of prompts whose tokens and logprobs are bit for bit the same.

The embedding model (all-MiniLM-L6-v2): per mode, the lowest cosine to fp32 and to sentence-transformers over a
few sentences, and the largest difference between a sentence embedded alone and within the batch.
Nothing here is timed: the figures are the same on any run (the kernels are deterministic).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.layers.context import ForwardContext, forward_context  # noqa: E402
from inference.loader.safetensors import load_model  # noqa: E402
from inference.loader.sources import resolve_source  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import prepare_cpu  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.tokenizer.tokenizer import Tokenizer  # noqa: E402
from inference.weights import quantize as Q  # noqa: E402

TEXT = Path(__file__).with_name("data") / "alice.txt"
AGREEMENT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "The three laws of thermodynamics state that",
]
INVARIANCE_PROMPTS = AGREEMENT_PROMPTS + [
    "1, 2, 3, 4,",
    "The best way to learn a new language is",
    "import numpy as np\n",
    "Water boils at",
]
SENTENCES = [
    "A man is eating food.",
    "The new movie is awesome and I would watch it again.",
    "Quantum entanglement links the states of two particles regardless of distance.",
    "ok",
    "The stock market fell 3.2% on Tuesday after the central bank raised interest rates by 50 basis points.",
]


def build(name: str, mode: str):
    directory = resolve_source(f"packaged:{name}")
    model = load_model(directory).eval()
    prepare_cpu(model, mode)  # as the service: quantized, or under none float rows that do not follow the count
    return model, Tokenizer.from_dir(directory), directory


@torch.inference_mode()
def perplexity(model, ids: list[int], kernels: bool) -> float:
    """exp(mean NLL) of every token after the first, in one teacher-forced pass."""
    saved, Q.FLOAT_ROWS = Q.FLOAT_ROWS, (1 << 30) if kernels else Q.FLOAT_ROWS
    try:
        with forward_context(ForwardContext.for_prompts([len(ids)])):
            hidden = model(torch.tensor(ids), torch.arange(len(ids)))
        logits = model.compute_logits(hidden).float()
    finally:
        Q.FLOAT_ROWS = saved
    return math.exp(F.cross_entropy(logits[:-1], torch.tensor(ids[1:])).item())


def engine(model, tokenizer, **options) -> LLMEngine:
    config = EngineConfig(**{"kv_cache_tokens": 4096, **options})
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), config)


def run(
    e: LLMEngine, out: dict[str, tuple[list[int], list[float]]] | None = None, steps: int | None = None
) -> dict[str, tuple[list[int], list[float]]]:
    """Steps the engine until it is idle, or ``steps`` times: each request's tokens and logprobs, added to ``out``."""
    out = {} if out is None else out
    while e.has_work and steps != 0:
        for d in e.step():
            ids, lps = out.setdefault(d.request_id, ([], []))
            ids.extend(d.token_ids)
            lps.extend(lp.logprob for lp in d.logprobs)
        steps = None if steps is None else steps - 1
    return out


def greedy(model, tokenizer, prompts: list[str], tokens: int, together: bool = False) -> dict:
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, logprobs=0)
    encoded = [tokenizer.encode(p, add_special_tokens=True) for p in prompts]
    if together:  # all at once, prompts cut in 5-token chunks
        e = engine(model, tokenizer, max_batched_tokens=5)
        for i, ids in enumerate(encoded):
            e.add_request(str(i), ids, params)
        return run(e)
    out = {}
    for i, ids in enumerate(encoded):
        e = engine(model, tokenizer)
        e.add_request(str(i), ids, params)
        out.update(run(e))
    return out


def agreement(reference: dict, answers: dict) -> tuple[float, float]:
    """(mean tokens equal before the first difference, share of equal positions)."""
    prefixes, equal, total = [], 0, 0
    for key, (ref, _) in reference.items():
        ids = answers[key][0]
        first = next((i for i, (a, b) in enumerate(zip(ref, ids, strict=True)) if a != b), len(ref))
        prefixes.append(first)
        equal += sum(a == b for a, b in zip(ref, ids, strict=True))
        total += len(ref)
    return sum(prefixes) / len(prefixes), equal / total


def generative(name: str, modes: list[str], tokens: int) -> list[str]:
    rows = []
    reference = None
    for mode in ["none", *modes]:
        model, tokenizer, _ = build(name, mode)
        text_ids = tokenizer.encode(TEXT.read_text(), add_special_tokens=True)
        ppl_prefill, ppl_decode = perplexity(model, text_ids, False), perplexity(model, text_ids, True)
        answers = greedy(model, tokenizer, AGREEMENT_PROMPTS, tokens)
        reference = reference or answers
        prefix, share = agreement(reference, answers)
        alone = greedy(model, tokenizer, INVARIANCE_PROMPTS, 64)
        together = greedy(model, tokenizer, INVARIANCE_PROMPTS, 64, together=True)
        same_tokens = sum(alone[k][0] == together[k][0] for k in alone) / len(alone)
        same_bits = sum(alone[k] == together[k] for k in alone) / len(alone)
        row = (f"| {name} | {mode} | {ppl_prefill:.3f} | {ppl_decode:.3f} | {prefix:.0f} / {tokens} | {share:.1%} "
               f"| {same_tokens:.0%} | {same_bits:.0%} |")  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    return rows


@torch.inference_mode()
def embeddings(modes: list[str]) -> list[str]:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer as HFTokenizer

    directory = resolve_source("packaged:minilm")
    hf = HFTokenizer.from_file(str(directory / "tokenizer.json"))
    hf.no_padding()
    hf.enable_truncation(max_length=256)
    ids = [e.ids for e in hf.encode_batch(SENTENCES)]
    expected = SentenceTransformer(str(directory), device="cpu").encode(SENTENCES, convert_to_tensor=True).float()
    rows, fp32 = [], None
    for mode in ["none", *modes]:
        model = load_model(directory).eval()
        prepare_cpu(model, mode)
        alone = torch.cat([model.embed([i]) for i in ids])
        together = model.embed(ids)
        fp32 = alone if fp32 is None else fp32
        row = (f"| all-minilm-l6-v2 | {mode} | {F.cosine_similarity(alone, fp32, dim=-1).min().item():.6f} "
               f"| {F.cosine_similarity(alone, expected, dim=-1).min().item():.6f} "
               f"| {(alone - together).abs().max().item():.1e} |")  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["smollm2", "gemma3"])  # none: the embeddings only
    parser.add_argument("--modes", nargs="*", default=["int8", "int4", "int4x2", "auto"])  # none: fp32 only
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--no-embeddings", action="store_true")
    args = parser.parse_args()
    print(
        "| model | mode | perplexity (prefill path) | perplexity (decode kernels) | greedy tokens = fp32 before "
        "the first difference | positions = fp32 | prompts with the same tokens alone and batched | ... and the same "
        "logprobs, bit for bit |\n|---|---|---|---|---|---|---|---|"
    )
    for name in args.models:
        generative(name, args.modes, args.tokens)
    if not args.no_embeddings:
        print(
            "\n| model | mode | min cosine to fp32 | min cosine to sentence-transformers | max abs, alone vs batch |"
            "\n|---|---|---|---|---|"
        )
        embeddings(args.modes)
    print(
        f"\ncommand: .venv/bin/python benchmarks/bench_quality.py --models {' '.join(args.models)} "
        f"--modes {' '.join(args.modes)} --tokens {args.tokens}"
    )


if __name__ == "__main__":
    main()
