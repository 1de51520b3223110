"""The launches ``kernels.cuda_compile`` compiles: each public kernel function at the configurations the engine
uses on a GPU. Shapes come from the models we serve: SmolLM2-135M (head 64, 9 / 3 heads, Q4_1), Gemma 3 270M
(head 256, 4 / 1 heads, window 512, Gemma norms, Q5_0 / Q8_0 / Q4_K / Q6_K), Llama-3-8B (head 128, 32 / 8
heads, bf16 or Q4_K), MiniLM (head 32, LayerNorm, non-causal), LLaVA's CLIP tower (QuickGELU) and the experts of
Mixtral-8x7B (8 of 14336 over 4096, top 2; bf16 or Q4_K_M), Qwen3-30B-A3B (128 of 768 over 2048, top 8) and
DeepSeek-V2-Lite (64 of 1408 over 2048, top 6; Q4_K with down in Q8_0). bf16 is the
engine's GPU dtype; fp16 and fp32 (the tests' exact path) are compiled where a kernel specializes on them.

Tensors are CPU tensors of the real shapes (their contents never matter: nothing runs), except where only a
shape's constexprs matter and a smaller one gives the same (token counts, cache sizes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels.activation import gelu, gelu_tanh_and_mul, quick_gelu, silu_and_mul
from kernels.decode_attention import decode_attention
from kernels.fused_moe import fused_moe
from kernels.fused_moe_gguf import fused_moe_gguf
from kernels.gguf_blocks import GGUF_BLOCKS
from kernels.kv_cache import store_kv
from kernels.layer_norm import layer_norm
from kernels.prefill_attention import paged_attention, varlen_attention
from kernels.quant_matmul import dequantize, quant_matmul
from kernels.rms_norm import rms_norm
from kernels.rotary import rotary_embedding
from kernels.sampling import top_k_top_p_probs, top_k_top_p_sample

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
DTYPES = (BF16, FP16, FP32)
# (name, query heads, kv heads, head_dim, sliding window)
ATTENTION = [
    ("smollm2", 9, 3, 64, None),
    ("gemma3", 4, 1, 256, 512),
    ("llama8b", 32, 8, 128, None),
    ("mha-h64", 16, 16, 64, None),  # CLIP's tower and plain multi-head decoders
    ("gqa32", 32, 1, 128, None),  # a group of 32: decode's tl.dot path at its widest
]
BLOCK = 16  # the engine's KV block size

Case = tuple[str, str, Callable[[], object]]
CASES: list[Case] = []
# (op, label) of the quick set (the tests' run): every op and code path, fewer dtypes and shapes
QUICK: set[tuple[str, str]] = set()


def case(op: str, label: str, quick: bool = True):
    def add(fn: Callable[[], object]) -> Callable[[], object]:
        CASES.append((op, label, fn))
        if quick:
            QUICK.add((op, label))
        return fn

    return add


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float", "fp")


# --- norms, activations, rotary, KV writes -------------------------------------------------------------------------

for dt in DTYPES:
    for d, gemma in ((576, False), (640, True), (4096, False)):
        case("rms_norm", f"D={d} {'gemma' if gemma else 'llama'} +residual {_dt(dt)}")(
            lambda d=d, gemma=gemma, dt=dt: rms_norm(
                torch.empty(8, d, dtype=dt), torch.empty(d, dtype=dt), 1e-6, torch.empty(8, d, dtype=dt), gemma
            )
        )
    # Gemma 3's per-head q/k norm on a strided [T, H, D] view of the fused qkv output
    case("rms_norm", f"per-head D=256 gemma {_dt(dt)}")(
        lambda dt=dt: rms_norm(
            torch.empty(8, 6 * 256, dtype=dt)[:, : 4 * 256].view(8, 4, 256),
            torch.empty(256, dtype=dt),
            1e-6,
            gemma=True,
            inplace=True,
        )  # fmt: skip
    )
    for d in (384, 1024):
        case("layer_norm", f"D={d} +residual {_dt(dt)}")(
            lambda d=d, dt=dt: layer_norm(
                torch.empty(8, d, dtype=dt),
                torch.empty(d, dtype=dt),
                torch.empty(d, dtype=dt),
                1e-12,
                torch.empty(8, d, dtype=dt),
            )  # fmt: skip
        )
        case("layer_norm", f"D={d} {_dt(dt)}")(
            lambda d=d, dt=dt: layer_norm(
                torch.empty(8, d, dtype=dt), torch.empty(d, dtype=dt), torch.empty(d, dtype=dt), 1e-12
            )
        )
    for inter in (1536, 14336):
        case("silu_and_mul", f"I={inter} {_dt(dt)}")(
            lambda inter=inter, dt=dt: silu_and_mul(torch.empty(8, 2 * inter, dtype=dt))
        )
    case("gelu_tanh_and_mul", f"I=2048 {_dt(dt)}")(lambda dt=dt: gelu_tanh_and_mul(torch.empty(8, 4096, dtype=dt)))
    case("gelu", f"erf and tanh {_dt(dt)}")(
        lambda dt=dt: (gelu(torch.empty(8, 1536, dtype=dt)), gelu(torch.empty(8, 1536, dtype=dt), "tanh"))
    )
    case("quick_gelu", _dt(dt))(lambda dt=dt: quick_gelu(torch.empty(8, 4096, dtype=dt)))

    for name, h, hkv, d, _ in ATTENTION[:3]:
        # in place on q / k views of the fused qkv projection, as the engine calls it
        def _rotary(h=h, hkv=hkv, d=d, dt=dt):
            qkv = torch.empty(8, (h + 2 * hkv) * d, dtype=dt)
            q = qkv[:, : h * d].view(8, h, d)
            k = qkv[:, h * d : (h + hkv) * d].view(8, hkv, d)
            positions = torch.zeros(8, dtype=torch.int64)
            return rotary_embedding(q, k, positions, torch.empty(d // 2, dtype=torch.float32), inplace=True)

        case("rotary", f"{name} {_dt(dt)}")(_rotary)

        def _store(hkv=hkv, d=d, dt=dt):
            kv = torch.empty(8, 2 * hkv * d, dtype=dt)
            k, v = kv[:, : hkv * d].view(8, hkv, d), kv[:, hkv * d :].view(8, hkv, d)
            cache = torch.empty(64 * BLOCK, hkv, d, dtype=dt)
            store_kv(k, v, cache, torch.empty_like(cache), torch.zeros(8, dtype=torch.int64))

        case("store_kv", f"{name} {_dt(dt)}")(_store)


# --- attention -----------------------------------------------------------------------------------------------------


def _prefill(h, hkv, d, window, dt, seqlen, causal=True):
    t = 2 * seqlen
    cu = torch.tensor([0, seqlen, t], dtype=torch.int32)
    q, k, v = torch.empty(t, h, d, dtype=dt), torch.empty(t, hkv, d, dtype=dt), torch.empty(t, hkv, d, dtype=dt)
    return varlen_attention(q, k, v, cu, cu, d**-0.5, causal=causal, sliding_window=window, max_seqlen_q=seqlen)


def _paged(h, hkv, d, window, dt, seqlen):
    cu = torch.tensor([0, seqlen, 2 * seqlen], dtype=torch.int32)
    cache = torch.empty(128 * BLOCK, hkv, d, dtype=dt)
    tables = torch.zeros(2, 64, dtype=torch.int32)
    lens = torch.full((2,), 1000, dtype=torch.int32)
    q = torch.empty(2 * seqlen, h, d, dtype=dt)
    return paged_attention(q, cache, cache, tables, cu, lens, BLOCK, d**-0.5, window, max_seqlen_q=seqlen)


def _decode(h, hkv, d, window, dt, seqs, splits):
    cache = torch.empty(256 * BLOCK, hkv, d, dtype=dt)
    tables = torch.zeros(seqs, 128, dtype=torch.int32)
    lens = torch.full((seqs,), 1000, dtype=torch.int32)
    q = torch.empty(seqs, h, d, dtype=dt)
    return decode_attention(q, cache, cache, tables, lens, BLOCK, d**-0.5, window, num_splits=splits)


for name, h, hkv, d, window in ATTENTION:
    for dt in DTYPES:
        # quick: the engine's bf16, and the exact fp32 path's own tiles at head 128 and 256
        quick = dt == BF16 or (dt == FP32 and name in ("gemma3", "llama8b"))
        for seqlen in (512, 1):  # a prompt, and the one-token chunk tail (smaller query tiles)
            case("varlen_attention", f"{name} q={seqlen} {_dt(dt)}", quick)(
                lambda h=h, hkv=hkv, d=d, window=window, dt=dt, seqlen=seqlen: _prefill(h, hkv, d, window, dt, seqlen)
            )
        case("paged_attention", f"{name} chunk=256 {_dt(dt)}", quick)(
            lambda h=h, hkv=hkv, d=d, window=window, dt=dt: _paged(h, hkv, d, window, dt, 256)
        )
        for seqs, splits in ((1, None), (64, 1)):  # batch 1 splits K (two kernels); a full batch does not
            case("decode_attention", f"{name} batch={seqs} {_dt(dt)}", quick)(
                lambda h=h, hkv=hkv, d=d, window=window, dt=dt, seqs=seqs, splits=splits: _decode(
                    h, hkv, d, window, dt, seqs, splits
                )
            )
for dt in DTYPES:  # MiniLM's encoder: head 32, bidirectional
    case("varlen_attention", f"minilm non-causal q=128 {_dt(dt)}")(
        lambda dt=dt: _prefill(12, 12, 32, None, dt, 128, causal=False)
    )


# --- GGUF matmul ---------------------------------------------------------------------------------------------------


def _blocks(qtype: str, n: int, k: int) -> torch.Tensor:
    weights, nbytes = GGUF_BLOCKS[qtype]
    return torch.zeros(n, k // weights * nbytes, dtype=torch.uint8)


for qtype in GGUF_BLOCKS:
    case("dequantize", qtype)(lambda qtype=qtype: dequantize(_blocks(qtype, 64, 4096), qtype))
    for dt in (BF16, FP16, FP32) if qtype == "Q4_K" else (BF16,):
        # decode GEMV at each of its row-tile widths, then prefill GEMM at each of its tile sizes
        for m in (1, 2, 4, 8, 16, 64, 512):
            # quick: every type's GEMV and largest GEMM tile, Q4_K's every tile (not the fp32 test path's largest
            # GEMM tile: ~17 s to build alone)
            quick = (m in (1, 512) or (qtype == "Q4_K" and dt == BF16)) and not (dt == FP32 and m == 512)
            case("quant_matmul", f"{qtype} M={m} N=14336 K=4096 {_dt(dt)}", quick)(
                lambda qtype=qtype, m=m, dt=dt: quant_matmul(
                    torch.empty(m, 4096, dtype=dt), _blocks(qtype, 14336, 4096), qtype
                )
            )


# --- mixture of experts ----------------------------------------------------------------------------------------------

for name, experts, top_k, hidden, inter in (("mixtral", 8, 2, 4096, 14336), ("qwen3-moe", 128, 8, 2048, 768)):
    for tokens, dt in ((4, BF16), (512, BF16), (4, FP32)):  # the decode tile, the prefill tile, the test path
        case("fused_moe", f"{name} T={tokens} {_dt(dt)}", quick=name == "mixtral" or dt == BF16)(
            lambda e=experts, k=top_k, h=hidden, i=inter, t=tokens, dt=dt: fused_moe(
                torch.empty(t, h, dtype=dt), torch.empty(e, 2 * i, h, dtype=dt), torch.empty(e, h, i, dtype=dt),
                torch.ones(t, k), torch.arange(t * k).view(t, k) % e,
            )
        )  # fmt: skip


# the experts in GGUF blocks: Mixtral's Q4_K_M (gate / up Q4_K, down Q6_K), DeepSeek-V2-Lite's (I = 1408 is no
# multiple of 256: llama.cpp falls back to a 32-weight type for down)
for name, experts, top_k, hidden, inter, types in (
    ("mixtral", 8, 2, 4096, 14336, ("Q4_K", "Q4_K", "Q6_K")),
    ("deepseek-v2-lite", 64, 6, 2048, 1408, ("Q4_K", "Q4_K", "Q8_0")),
):
    for tokens in (4, 512):  # the decode tile, the prefill tile
        case("fused_moe_gguf", f"{name} {'/'.join(types)} T={tokens} bf16", quick=name == "mixtral")(
            lambda e=experts, k=top_k, h=hidden, i=inter, t=tokens, ty=types: fused_moe_gguf(
                torch.empty(t, h, dtype=BF16), (_blocks(ty[0], e * i, h).view(e, i, -1), ty[0]),
                (_blocks(ty[1], e * i, h).view(e, i, -1), ty[1]), (_blocks(ty[2], e * h, i).view(e, h, -1), ty[2]),
                torch.ones(t, k), torch.arange(t * k).view(t, k) % e,
            )
        )  # fmt: skip


# --- sampling ------------------------------------------------------------------------------------------------------

for vocab in (49152, 262144):
    rows = 8

    def _settings(rows=rows):
        return torch.ones(rows), torch.full((rows,), 50, dtype=torch.int32), torch.full((rows,), 0.9)

    case("sampling", f"sample V={vocab}")(
        lambda vocab=vocab, rows=rows: top_k_top_p_sample(torch.empty(rows, vocab), *_settings(), torch.rand(rows))
    )
    case("sampling", f"probs V={vocab}")(lambda vocab=vocab, rows=rows: top_k_top_p_probs(torch.empty(rows, vocab),
                                                                                          *_settings()))  # fmt: skip
