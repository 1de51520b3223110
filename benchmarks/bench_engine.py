"""The engine alone (no HTTP), on a GPU or the CPU: time to first token and decode tok/s by batch size.

A random-weight model of a real shape (default Llama-3-8B's; random weights cost nothing to ship and run as
fast as trained ones), or a packaged model. Weights dense (bf16) or in GGUF blocks (``--weights q4_k``:
random Q4_K blocks, a mixture of experts' stacks included; ``gguf``: the packaged file's own). Beside each
decode rate: the memory-bandwidth roofline (weights, of a mixture of experts the experts the batch touches, + the
KV cache read per step, at the GPU's data-sheet bandwidth) and, with ``--hf``,
transformers' ``generate`` with a static cache on the same GPU in the same run.

    python3 benchmarks/bench_engine.py --shape llama-8b --weights dense --batch 1 8 64 256 --hf
    python3 benchmarks/bench_engine.py --shape llama-8b --weights q4_k
    python3 benchmarks/bench_engine.py --model packaged:gemma3 --weights gguf --hf
    python3 benchmarks/bench_engine.py --shape mixtral-8x7b --batch 1 8 64 --hf    # the experts' active bytes
    python3 benchmarks/bench_engine.py --shape mixtral-8x7b --weights q4_k --batch 1 8 64
    python3 benchmarks/bench_engine.py --shape deepseek-v2-lite --batch 1 8 64 --hf
    .venv/bin/python benchmarks/bench_engine.py --device cpu --shape smollm2 --dtype float32 --batch 1 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference.config import EngineConfig  # noqa: E402
from inference.engine.kv_budget import kv_bytes_per_token  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.models.registry import build_model  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402

# HF config.json fields of a few Llama-family shapes
SHAPES = {
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True),  # checks the script
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    # the packaged Gemma 3 270M's shape (its file does not travel to a lent GPU: ~64 MiB may): 5 sliding layers of
    # 512 to one full, two rope bases, a 262k vocabulary
    "gemma3-270m": dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_size=640,
                        intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                        head_dim=256, vocab_size=262144, tie_word_embeddings=True, rms_norm_eps=1e-6,
                        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256, sliding_window=512,
                        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
                        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    # mixtures of experts (issue 23): Mixtral-8x7B, DeepSeek-V2-Lite (MLA), and a small pair for the CPU: 8
    # experts of 768 with 2 active against a dense MLP of 1536 (the same active parameters)
    "mixtral-8x7b": dict(architectures=["MixtralForCausalLM"], hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                         num_local_experts=8, num_experts_per_tok=2, tie_word_embeddings=False),
    "deepseek-v2-lite": dict(architectures=["DeepseekV2ForCausalLM"], hidden_size=2048, intermediate_size=10944,
                             moe_intermediate_size=1408, num_hidden_layers=27, num_attention_heads=16,
                             num_key_value_heads=16, vocab_size=102400, n_routed_experts=64, num_experts_per_tok=6,
                             n_shared_experts=2, first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None,
                             qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, tie_word_embeddings=False,
                             rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                                           "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32,
                                           "beta_slow": 1}),
    "moe-small": dict(architectures=["MixtralForCausalLM"], hidden_size=512, intermediate_size=768,
                      num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2, vocab_size=32000,
                      num_local_experts=8, num_experts_per_tok=2, tie_word_embeddings=True),
    "moe-small-dense": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                            num_key_value_heads=2, vocab_size=32000, tie_word_embeddings=True),
}  # fmt: skip


class _Tokenizer:
    stop_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ""


class _Detokenizer:
    def __init__(self, tokenizer, prompt_ids):
        pass

    def add(self, token_id: int) -> str:
        return ""

    def flush(self) -> str:
        return ""


def random_model(shape: str, dtype: torch.dtype, device: str) -> torch.nn.Module:
    hf = {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
          "rope_theta": 500000.0, **SHAPES[shape]}  # fmt: skip
    if hf["architectures"] == ["DeepseekV2ForCausalLM"]:
        hf["max_position_embeddings"] = 163840  # 4096 x its yarn factor of 40
    with torch.device("meta"):
        model = build_model(hf)
    model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(engine: LLMEngine, prompts: list[list[int]], max_tokens: int, device: str) -> tuple[float, float, int]:
    """(seconds to the first step's end, total seconds, tokens generated) for prompts submitted together."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    for i, p in enumerate(prompts):
        engine.add_request(f"r{time.perf_counter_ns()}-{i}", p, params)
    sync(device)
    start = time.perf_counter()
    first = None
    tokens = 0
    while engine.has_work:
        tokens += sum(len(d.token_ids) for d in engine.step())
        sync(device)
        first = first or time.perf_counter() - start
    return first, time.perf_counter() - start, tokens


def random_gguf_weights(model: torch.nn.Module, qtype: str, device: str) -> None:
    """Every projection (and the head) as random ``qtype`` blocks: the bytes a Q4_K checkpoint reads; a mixture
    of experts' stacks too (``GGUFExperts``, gate / up / down all in ``qtype``)."""
    from inference.layers.moe import FusedMoE
    from inference.weights.gguf import GGUFExperts, GGUFLinear
    from kernels.gguf_blocks import GGUF_BLOCKS, GGUF_HALF_FIELDS

    weights, nbytes = GGUF_BLOCKS[qtype]
    gen = torch.Generator().manual_seed(2)

    def blocks(n: int, k: int) -> torch.Tensor:  # [n, k / weights * nbytes] on the device
        raw = torch.randint(0, 256, (n, k // weights, nbytes), generator=gen, dtype=torch.uint8)
        for offset in GGUF_HALF_FIELDS[qtype]:  # small finite fp16 scales, so activations stay sane
            raw[:, :, offset : offset + 2] = (torch.rand(n, k // weights, generator=gen) * 1e-3).half().view(
                torch.uint8).view(n, k // weights, 2)  # fmt: skip
        return raw.view(n, -1).to(device)

    for name, module in list(model.named_modules()):
        if isinstance(module, FusedMoE):
            e, inter, hidden = module.w13_weight.shape[0], module.intermediate_size, module.w13_weight.shape[2]
            stacks = [(blocks(e * rows, k).view(e, rows, -1), qtype) for rows, k in ((inter, hidden),
                      (inter, hidden), (hidden, inter))]  # fmt: skip
            layer = GGUFExperts(*stacks, module.activation)
        elif isinstance(module, torch.nn.Linear):
            layer = GGUFLinear(qtype, blocks(module.out_features, module.in_features), module.in_features,
                               module.bias)  # fmt: skip
            if hasattr(module, "split"):
                layer.split = module.split
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, layer)


def weight_bytes(model: torch.nn.Module, batch: int = 1) -> int:
    """Bytes a decode step of ``batch`` tokens reads for weights: every projection and the head (an untied
    embedding table is only gathered from, a tied one is read whole as the head); of a mixture of experts, the
    experts the batch is expected to touch (each token picks k of E: E * (1 - (1 - k/E)^batch) of them)."""
    from inference.layers.moe import FusedMoE
    from inference.weights.gguf import GGUFExperts, GGUFLinear

    total = 0
    for module in model.modules():
        if isinstance(module, GGUFLinear):
            total += module.weight_bytes()
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif hasattr(module, "top_k") and isinstance(getattr(module, "experts", None), FusedMoE | GGUFExperts):
            experts = module.experts
            share = 1 - (1 - module.top_k / experts.num_experts) ** batch
            if isinstance(experts, GGUFExperts):
                stacked = experts.weight_bytes()
            else:
                stacked = (experts.w13_weight.numel() + experts.w2_weight.numel()) * experts.w13_weight.element_size()
            total += int(share * stacked)
    if getattr(model, "lm_head", "absent") is None:
        embed = model.model.embed_tokens.weight
        total += embed.numel() * embed.element_size()
    return total


def peak_bandwidth(device: str) -> tuple[float, str]:
    """GB/s of the device's memory (data sheet), and its name."""
    if not device.startswith("cuda"):
        return float("nan"), "cpu"
    from bench_kernels import PEAKS

    name = torch.cuda.get_device_name()
    return next((v[0] for k, v in PEAKS.items() if k in name), float("nan")), name


def hf_model(model_source, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """transformers' model of the same shape (random weights, built on the device) or of the same checkpoint."""
    import transformers
    from transformers import AutoModelForCausalLM

    if isinstance(model_source, dict):
        fields = dict(model_source)
        arch = fields.pop("architectures", ["LlamaForCausalLM"])[0]
        kind = {"MixtralForCausalLM": "mixtral", "DeepseekV2ForCausalLM": "deepseek_v2"}.get(arch, "llama")
        config = transformers.AutoConfig.for_model(fields.pop("model_type", kind), **fields)
        with torch.device(device):  # an 8B model built in fp32 on the host first would take minutes
            hf = getattr(transformers, arch)._from_config(config, dtype=dtype)
    else:
        hf = AutoModelForCausalLM.from_pretrained(model_source, dtype=dtype).to(device)
    return hf.eval().requires_grad_(False)


class _StepClock:
    """A logits processor that only notes when each generated token's logits are ready (the device synced):
    generate calls it once per new token, the first just after the prefill."""

    def __init__(self, device: str) -> None:
        self.device, self.times = device, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def hf_clocked(
    hf: torch.nn.Module, device: str, ids: torch.Tensor, new_tokens: int
) -> tuple[float, list[float], float]:
    """transformers' greedy generate with a static cache for prompts ``ids`` [batch, len]: a warm-up, then the same
    call clocked -> (its start, when each new token's logits were ready, seconds of the warm-up). The warm-up being
    the same call, the static cache has the measured run's size, and on a GPU the forward generate compiles for it
    (transformers does so by default for a static cache) is compiled before the clock starts."""
    from transformers import LogitsProcessorList

    kwargs = dict(attention_mask=torch.ones_like(ids), pad_token_id=0, do_sample=False, cache_implementation="static",
                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # fmt: skip
    start = time.perf_counter()
    hf.generate(ids, **kwargs)
    sync(device)
    warm = time.perf_counter() - start
    clock = _StepClock(device)
    start = time.perf_counter()
    hf.generate(ids, logits_processor=LogitsProcessorList([clock]), **kwargs)
    assert len(clock.times) == new_tokens, (len(clock.times), new_tokens)
    return start, clock.times, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="llama-8b", choices=sorted(SHAPES), help="a random-weight model")
    parser.add_argument("--model", help="a packaged model instead (packaged:gemma3, packaged:smollm2)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--weights",
        default="dense",
        choices=["dense", "q4_k", "gguf"],
        help="dense; q4_k: random Q4_K blocks (random shapes); gguf: the packaged file's blocks",
    )
    parser.add_argument("--kernels", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hf", action="store_true", help="also transformers' generate (static cache), same GPU")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.model:
        from inference.loader.safetensors import load_model
        from inference.loader.sources import gguf_file, resolve_source

        source = resolve_source(args.model)
        model = load_model(source, dtype=dtype, device=args.device).eval()
        if args.weights == "gguf":
            from inference.weights.gguf import use_gguf_weights

            use_gguf_weights(model, gguf_file(args.model), torch.device(args.device))
        label, hf_source = args.model, source
    else:
        model = random_model(args.shape, dtype, args.device)
        if args.weights == "q4_k":
            random_gguf_weights(model, "Q4_K", args.device)
        label = args.shape
        hf_source = {"max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                     **SHAPES[args.shape]}  # fmt: skip
    vocab = model.config.vocab_size
    most = max(args.batch)
    kv_tokens = most * (16 + args.decode_tokens + 16) + 1024
    cfg = EngineConfig(device=args.device, dtype=args.dtype, max_num_seqs=most, kernels=args.kernels,
                       kv_cache_tokens=kv_tokens, max_batched_tokens=2048)  # fmt: skip
    engine = LLMEngine(model, _Tokenizer(), _Detokenizer, cfg)
    per_token_kv = kv_bytes_per_token(model, model.attention_layers()[0].k_cache.dtype)  # MLA: the latent once
    wbytes = weight_bytes(model)
    bandwidth, gpu = peak_bandwidth(args.device)
    print(f"{label}, {args.dtype}, weights {args.weights} ({wbytes / 1e9:.2f} GB read per step), kernels "
          f"{engine.runner.kernels}, CUDA graphs {engine.runner.graphs is not None}, on {gpu}")  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (512,), generator=gen).tolist()
    run(engine, [prompt[:16]], 8, args.device)  # warm-up
    ttft = statistics.median(run(engine, [prompt], 1, args.device)[0] for _ in range(args.rounds))
    print(f"time to first token, 512-token prompt: {ttft * 1000:.1f} ms ({512 / ttft:.0f} prefill tok/s)")
    # ours at every batch size first, then transformers': a run cut short by a time limit keeps our figures
    print(f"{'batch':>6}{'ours tok/s':>12}{'roofline':>10}{'of roofline':>12}")
    rows = {}
    for batch in args.batch:
        rates = []
        for _ in range(args.rounds):
            prompts = [torch.randint(0, vocab, (16,), generator=gen).tolist() for _ in range(batch)]
            first, total, tokens = run(engine, prompts, args.decode_tokens, args.device)
            rates.append((tokens - batch) / (total - first))  # decode steps only: the prefill step excluded
        ours = statistics.median(rates)
        context = 16 + args.decode_tokens / 2  # the average context a decode step reads
        step_bytes = weight_bytes(model, batch) + batch * context * per_token_kv
        roofline = batch * bandwidth * 1e9 / step_bytes
        rows[batch] = ours, f"{batch:>6}{ours:>12.1f}{roofline:>10.0f}{ours / roofline:>12.1%}"
        print(rows[batch][1], flush=True)
    if args.hf:
        hf = hf_model(hf_source, args.device, dtype)
        one = torch.tensor([prompt], device=args.device)
        firsts = [hf_clocked(hf, args.device, one, 1) for _ in range(args.rounds)]  # one token: nothing to compile
        hf_ttft = statistics.median(times[0] - start for start, times, _ in firsts)
        print(f"transformers, time to first token, 512-token prompt: {hf_ttft * 1000:.1f} ms "
              f"(ours / theirs {ttft / hf_ttft:.2f})", flush=True)  # fmt: skip
        print(f"{'batch':>6}{'ours tok/s':>12}{'roofline':>10}{'of roofline':>12}{'HF static':>12}{'vs HF':>8}")
        for batch, (ours, line) in rows.items():
            ids = torch.randint(0, vocab, (batch, 16), generator=torch.Generator().manual_seed(3)).to(args.device)
            _, times, warm = hf_clocked(hf, args.device, ids, args.decode_tokens)
            hf_rate = batch * (len(times) - 1) / (times[-1] - times[0])  # the steps after the first token, as ours
            print(f"{line}{hf_rate:>12.1f}{ours / hf_rate:>7.2f}x   (HF warm-up {warm:.1f} s)", flush=True)
    print(f"reproduce: python3 benchmarks/bench_engine.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
