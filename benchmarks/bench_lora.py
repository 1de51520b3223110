"""What a LoRA adapter costs on the CPU: SmolLM2-135M as ``make run`` serves it (the default quantization, the fused
decode step), through the engine, with a rank-16 PEFT adapter on every projection (random weights: the cost does not
depend on them). Decode tokens per second of the base model and of the adapter, at batch 1 and 8, and a batch of 8
that mixes them (4 and 4); each request 64 greedy tokens after a short prompt. The modes alternate, medians.

A step that holds adapter rows leaves the fused decode step for the plain forward (``inference/layers/lora.py``),
so part of the adapter's cost is the fused step's gain given up.

    .venv/bin/python benchmarks/bench_lora.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from inference.config import DEFAULT_MODELS  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.loader.lora import attach  # noqa: E402
from inference.loader.sources import resolve_source  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402

TOKENS = 64
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_adapter(directory: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32)
    peft = get_peft_model(hf, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.01)
    peft.save_pretrained(out)
    return out


def decode_rate(engine: LLMEngine, prompt: list[int], adapters: list[int | None]) -> float:
    """Generated tokens per second of one batch (all its requests submitted at once, prefill included)."""
    for i, lora in enumerate(adapters):
        engine.add_request(str(i), prompt, SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True,
                                                          lora_id=lora))  # fmt: skip
    start = time.perf_counter()
    produced = 0
    while engine.has_work:
        produced += sum(len(d.token_ids) for d in engine.step())
    return produced / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = next(s for s in DEFAULT_MODELS if s.id == "smollm2-135m-instruct")
    model, tokenizer, directory = build_model(spec)
    with tempfile.TemporaryDirectory() as tmp:
        attach(model, write_adapter(resolve_source(spec.source), Path(tmp) / "adapter"), 0)
    engine = LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), spec.engine)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a short poem about the sea."}])
    modes = {
        "base, batch 1": [None], "adapter, batch 1": [0],
        "base, batch 8": [None] * 8, "adapter, batch 8": [0] * 8, "4 base + 4 adapter, batch 8": [None, 0] * 4,
    }  # fmt: skip
    decode_rate(engine, prompt, [None, 0])  # warm-up
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode, adapters in modes.items() if r % 2 == 0 else reversed(modes.items()):
            rates[mode].append(decode_rate(engine, prompt, adapters))
    print(f"SmolLM2-135M (quantize {spec.quantize_mode()}, fused decode {engine.runner.fused is not None}), rank-16 "
          f"adapter on every projection, {len(prompt)}-token prompt, {TOKENS} tokens a request")  # fmt: skip
    print("| requests | tokens/s |")
    print("|---|---|")
    for mode, values in rates.items():
        print(f"| {mode} | {statistics.median(values):.0f} |")
    print(f"(medians of {args.rounds} alternating rounds)")
    print(f"reproduce: .venv/bin/python benchmarks/bench_lora.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
