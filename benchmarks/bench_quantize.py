"""Weight-only quantization on the CPU: roofline figures, decode / prefill speed and accuracy per mode.

    .venv/bin/python benchmarks/bench_quantize.py [--models gemma3 smollm2] [--modes fp32 int8 int4 ...] [--rounds 3]

1. Bandwidth: what this machine streams from memory (a 512 MB sum and copy), then every quantized Linear of
   each model called once per sweep in model order (so, as in a decode step, weights come from DRAM, not the
   cache): time per call, bytes read and GB/s per layer type, and the sweep against the memory bandwidth.
2. Speed: batch-1 greedy decode tok/s (16-token prompt, ``--decode-tokens`` generated, prefill step excluded)
   and 512-token prefill tok/s through ``LLMEngine``; the modes run alternately, ``--rounds`` times, median.
3. Accuracy against fp32: fp32's greedy continuations of a few prompts, teacher-forced through the quantized
   model with every row on the quantized path: top-1 agreement, max |logit error|, mean KL(fp32 || quant);
   and how many of the engine's greedy decode tokens equal fp32's before the first difference.

A mode is ``fp32`` or one of ``inference.weights.quantize.MODES`` (int8, int4, int4x2, auto), optionally with
``quantize``'s arguments, e.g. ``int4:head=int8:group=64`` or ``auto:top=256`` (head_exact_top); ``:torch`` at the
end decodes on the torch path (the fused CPU decode step off), e.g. ``--modes auto:torch auto`` for before / after.

Other processes skew the timings badly on a 2-core machine: every parallel op waits for the other core,
so one busy process can add a scheduler quantum (~4-8 ms) to an op. The ``busy`` column is the largest
CPU share (of all cores) others used during one run of that row; rerun when it is above a few percent.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.layers.context import ForwardContext, forward_context  # noqa: E402
from inference.loader.safetensors import load_model  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.weights import quantize as Q  # noqa: E402
from tests.support.models import loaded, model_dir  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4,",
    "The mitochondria is the powerhouse of the cell because",
    "Translate to French: I like cheese.",
]
DECODE_PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
DECODE_PROMPT_TOKENS = 16


# --- machine load -------------------------------------------------------------------------------------


def _cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, of this process)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    with open(f"/proc/{os.getpid()}/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime


class OthersBusy:
    """Share of all cores that other processes used while the block ran: the timing noise to expect."""

    def __enter__(self) -> OthersBusy:
        self.start, self.t0 = _cpu_jiffies(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        (busy1, own1), (busy0, own0) = _cpu_jiffies(), self.start
        ticks = os.sysconf("SC_CLK_TCK") * (time.monotonic() - self.t0) * os.cpu_count()
        self.share = max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(ticks, 1e-9))


# --- bandwidth ----------------------------------------------------------------------------------------


def _best_and_median(fn, repeat: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def memory_bandwidth() -> float:
    """Print sum / copy bandwidth of a 512 MB tensor (far above the L3); return the best read GB/s."""
    x = torch.ones(2**27)  # 512 MB fp32
    y = torch.empty_like(x)
    best_read = 0.0
    for threads in sorted({1, torch.get_num_threads()}):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            b, m = _best_and_median(x.sum, 10)
            best_read = max(best_read, x.nbytes / b / 1e9)
            rates = f"best {x.nbytes / b / 1e9:5.1f}  median {x.nbytes / m / 1e9:5.1f} GB/s"
            print(f"  sum  512 MB, {threads} thread(s): {rates}")
            b, m = _best_and_median(lambda: y.copy_(x), 10)
            rates = f"best {2 * x.nbytes / b / 1e9:5.1f}  median {2 * x.nbytes / m / 1e9:5.1f} GB/s (read + write)"
            print(f"  copy 512 MB, {threads} thread(s): {rates}")
        finally:
            torch.set_num_threads(previous)
    return best_read


def _bytes_read(layer: Q.QuantizedLinear) -> int:
    """Bytes the kernel reads per call: quantized weight and its scales (bias and activations are noise)."""
    if isinstance(layer, Q.Int4Linear):
        return layer.weight_int4.nbytes + layer.scales_and_zeros.nbytes
    return layer.weight_int8.nbytes + layer.scales.nbytes


def _kind(name: str, layer: Q.QuantizedLinear) -> str:
    if isinstance(layer, Q.Int4Linear):
        return f"{name.rsplit('.', 1)[-1]} int4" + ("x2" if layer.levels == 2 else "")
    return f"{name.rsplit('.', 1)[-1]} int8"


def kernel_sweep(model: torch.nn.Module, label: str, bandwidth: float, sweeps: int = 15) -> None:
    """Call every quantized Linear's kernel once per sweep, in model order, on one bf16 row, as a decode step
    does (so its weights come from memory, not the cache); then the head's whole forward (with exact_top)."""
    layers = [(_kind(n, m), m) for n, m in model.named_modules() if isinstance(m, Q.QuantizedLinear)]
    inputs = {id(m): torch.randn(1, m.in_features).bfloat16() for _, m in layers}
    times: dict[str, list[float]] = defaultdict(list)
    nbytes: dict[str, int] = defaultdict(int)
    shapes: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for kind, module in layers:
        nbytes[kind] += _bytes_read(module)
        shapes[kind].add((module.out_features, module.in_features))
    head = getattr(model, "lm_head", None)
    head_forward: list[float] = []
    with torch.inference_mode():
        for sweep in range(sweeps + 1):
            per_kind: dict[str, float] = defaultdict(float)
            for kind, module in layers:
                start = time.perf_counter()
                module._mm(inputs[id(module)])
                per_kind[kind] += time.perf_counter() - start
            if isinstance(head, Q.QuantizedLinear):
                x = inputs[id(head)].float()
                start = time.perf_counter()
                head(x)
                head_forward.append(time.perf_counter() - start)
            if sweep:  # the first sweep warms up
                for kind, t in per_kind.items():
                    times[kind].append(t)
    total_bytes = total_time = 0.0
    print(f"  {label}: weights coming from memory, median of {sweeps} sweeps")
    for kind, ts in times.items():
        t = statistics.median(ts)
        n = sum(1 for k, _ in layers if k == kind)
        total_bytes += nbytes[kind]
        total_time += t
        shape = " ".join(f"[{o} x {i}]" for o, i in sorted(shapes[kind]))
        print(
            f"    {kind:20s} x{n:<3d} {shape:16s} {t / n * 1e6:8.0f} us/call  {nbytes[kind] / n / 1e6:7.2f} MB/call "
            f"{nbytes[kind] / t / 1e9:5.1f} GB/s"
        )
    print(
        f"    all quantized matmuls of one step: {total_bytes / 1e6:.0f} MB in {total_time * 1e3:.1f} ms = "
        f"{total_bytes / total_time / 1e9:.1f} GB/s, {total_bytes / total_time / 1e9 / bandwidth:.0%} of the "
        f"{bandwidth:.1f} GB/s read bandwidth (roofline {total_bytes / bandwidth * 1e3 / 1e9:.1f} ms)"
    )
    if head_forward:
        print(
            f"    head forward (fp32 in/out, exact_top={head.exact_top}): "
            f"{statistics.median(head_forward[1:]) * 1e3:.2f} ms"
        )


# --- modes --------------------------------------------------------------------------------------------


def apply_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``fp32`` | a quantize mode [``:head=M``][``:group=N``][``:top=K``] -> the model, quantized in place."""
    name, *options = mode.split(":")
    options = [o for o in options if o != "torch"]  # the engine's option (``_engine``), not the quantizer's
    if name == "fp32":
        return model
    kwargs: dict[str, object] = {}
    for option in options:
        key, value = option.split("=")
        kwargs[{"group": "group_size", "top": "head_exact_top"}.get(key, key)] = value if key == "head" else int(value)
    return Q.quantize(model, name, **kwargs)


def _engine(model: torch.nn.Module, tokenizer, mode: str) -> LLMEngine:
    """``mode`` ending in ``:torch``: the fused CPU decode step off (the torch path, for before / after)."""
    # no prefix caching: the prefill rounds repeat one prompt, which the cache would answer without computing it
    config = EngineConfig(kv_cache_tokens=2048, fused_decode=not mode.endswith(":torch"), enable_prefix_caching=False)
    return LLMEngine(model, tokenizer, lambda t, p: IncrementalDetokenizer(t, p), config)


def decode(engine: LLMEngine, prompt: list[int], tokens: int) -> tuple[float, list[int]]:
    """Greedy batch-1 decode: (tok/s over the decode steps, prefill step excluded; generated ids)."""
    engine.add_request("decode", prompt, SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True))
    ids = [t for d in engine.step() for t in d.token_ids]  # prefill, first token
    start = time.perf_counter()
    while engine.has_work:
        ids += [t for d in engine.step() for t in d.token_ids]
    return (len(ids) - 1) / (time.perf_counter() - start), ids


def prefill(engine: LLMEngine, prompt: list[int]) -> float:
    """Prompt tokens per second of one step that prefills ``prompt`` (and samples one token)."""
    engine.add_request("prefill", prompt, SamplingParams(max_tokens=1, temperature=0, ignore_eos=True))
    start = time.perf_counter()
    while engine.has_work:
        engine.step()
    return len(prompt) / (time.perf_counter() - start)


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(ids)])):
        return model.compute_logits(model(torch.tensor(ids), torch.arange(len(ids)))).float()


def accuracy(reference: torch.nn.Module, model: torch.nn.Module, tokenizer, new_tokens: int = 24) -> dict:
    """Teacher-forced on fp32's greedy continuations, every row through the quantized kernels."""
    agree = total = 0
    max_err = kl = 0.0
    saved, Q.FLOAT_ROWS = Q.FLOAT_ROWS, 1 << 30  # whole sequences on the quantized path
    try:
        for prompt in PROMPTS:
            ids = tokenizer.encode(prompt, add_special_tokens=True)
            first = len(ids) - 1  # logits of this row predict the first new token
            for _ in range(new_tokens):
                ids.append(int(_logits(reference, ids)[-1].argmax()))
            ref, out = _logits(reference, ids)[first:], _logits(model, ids)[first:]
            agree += int((ref.argmax(-1) == out.argmax(-1)).sum())
            total += ref.shape[0]
            max_err = max(max_err, float((ref - out).abs().max()))
            kl += float(
                torch.nn.functional.kl_div(
                    out.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean"
                )
            )
    finally:
        Q.FLOAT_ROWS = saved
    return {"top1": agree / total, "max_err": max_err, "kl": kl / len(PROMPTS)}


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gemma3", "smollm2"])
    parser.add_argument("--modes", nargs="+", default=["fp32", "int8", "int4", "int4x2", "auto"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--prefill-tokens", type=int, default=512)
    parser.add_argument("--prefill-repeats", type=int, default=2, help="prefills per round (all in the median)")
    parser.add_argument("--skip-bandwidth", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    print("reproduce: .venv/bin/python benchmarks/bench_quantize.py " + " ".join(sys.argv[1:]))
    threads = f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {threads}, FLOAT_ROWS={Q.FLOAT_ROWS}")
    torch.manual_seed(0)

    models: dict[tuple[str, str], torch.nn.Module] = {}
    engines: dict[tuple[str, str], LLMEngine] = {}
    tokenizers, bases = {}, {}
    for name in args.models:
        bases[name] = load_model(model_dir(name)).eval()
        tokenizers[name] = loaded(name)[1]
        for mode in args.modes:
            start = time.perf_counter()
            # a copy of the module tree sharing the float weights (quantize replaces modules, never writes weights)
            shared = {id(p): p for p in bases[name].parameters()}
            models[name, mode] = apply_mode(copy.deepcopy(bases[name], memo=shared), mode)
            engines[name, mode] = _engine(models[name, mode], tokenizers[name], mode)
            if mode != "fp32":
                print(f"quantized {name} {mode} in {time.perf_counter() - start:.1f}s")

    if not args.skip_bandwidth:
        print("\n== bandwidth ==")
        bandwidth = memory_bandwidth()
        for (name, mode), model in models.items():
            if mode != "fp32":
                kernel_sweep(model, f"{name} {mode}", bandwidth)

    print(f"\n== speed: {args.rounds} rounds, modes alternating ==")
    decode_tps: dict[tuple[str, str], list[float]] = defaultdict(list)
    prefill_tps: dict[tuple[str, str], list[float]] = defaultdict(list)
    generated: dict[tuple[str, str], list[int]] = {}
    busy: dict[tuple[str, str], list[float]] = defaultdict(list)
    for name in args.models:
        tok = tokenizers[name]
        decode_prompt = tok.encode(DECODE_PROMPT, add_special_tokens=True)[:DECODE_PROMPT_TOKENS]
        # a long prompt of real text, cut to exactly --prefill-tokens
        text = " ".join(PROMPTS) + " "
        long_ids = tok.encode(text * (args.prefill_tokens // 8 + 1), add_special_tokens=True)[: args.prefill_tokens]
        for key in [(name, mode) for mode in args.modes]:  # warm-up: first calls allocate
            decode(engines[key], decode_prompt, 4)
            prefill(engines[key], long_ids[:64])
        for _ in range(args.rounds):
            for mode in args.modes:
                key = (name, mode)
                with OthersBusy() as load:
                    tps, generated[key] = decode(engines[key], decode_prompt, args.decode_tokens)
                    decode_tps[key].append(tps)
                    for _ in range(args.prefill_repeats):
                        prefill_tps[key].append(prefill(engines[key], long_ids))
                busy[key].append(load.share)

    results = {}
    if not args.skip_accuracy:
        for (name, mode), model in models.items():
            if mode != "fp32":
                results[name, mode] = accuracy(bases[name], model, tokenizers[name])

    print(
        f"\n{'model':8s} {'mode':24s} {'decode tok/s':>12s} {'prefill tok/s':>13s} {'busy':>5s}  "
        f"{'top-1':>6s} {'max|dlogit|':>11s} {'KL':>8s}  greedy = fp32"
    )
    for name in args.models:
        for mode in args.modes:
            key = (name, mode)
            ref = generated[name, args.modes[0]]
            same = next((i for i, (a, b) in enumerate(zip(generated[key], ref, strict=True)) if a != b), len(ref))
            acc = results.get(key)
            quality = (
                f"{acc['top1']:6.1%} {acc['max_err']:11.3f} {acc['kl']:8.5f}"
                if acc
                else f"{'-':>6s} {'-':>11s} {'-':>8s}"
            )
            print(
                f"{name:8s} {mode:24s} {statistics.median(decode_tps[key]):12.1f} "
                f"{statistics.median(prefill_tps[key]):13.0f} {max(busy[key]):5.0%}  {quality}  "
                f"{same}/{len(generated[key])}"
            )
    print(f"(greedy = fp32: how many decode tokens equal {args.modes[0]}'s before the first difference)")


if __name__ == "__main__":
    main()
