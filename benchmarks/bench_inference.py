"""Inference service vs llama.cpp's server on the same GGUF files and prompts (a script, not a test).

For each packaged generative model: prefill tok/s on a ~512-token prompt, decode tok/s at batch 1,
and total generated tok/s with 8 concurrent streams. Ours and llama.cpp's runs alternate and the
medians are reported with the ratios. Both servers are driven over HTTP with the same OpenAI
completions requests (greedy, EOS suppressed with logit_bias so lengths are equal).

    .venv/bin/python benchmarks/bench_inference.py [--rounds 3] [--quantize int8] \
        [--llama-python /root/bench-venv/bin/python]

llama.cpp is the optional peer: ``pip install "llama-cpp-python[server]"`` into any Python
(it builds from source, ~18 minutes on 2 cores) and pass its interpreter with --llama-python.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference import packaged  # noqa: E402
from inference.loader.sources import resolve_source  # noqa: E402
from inference.tokenizer.tokenizer import Tokenizer  # noqa: E402
from tests.support.processes import Process, free_port  # noqa: E402

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based inks and a wooden press adapted from wine making. "
) * 16  # ~512 tokens with both tokenizers (checked at run time and printed)


class Server:
    """One OpenAI-compatible server (ours or the peer) on ``port``, serving ``model``."""

    def __init__(self, name: str, cmd: list[str], port: int, model: str):
        self.name, self.port, self.model = name, port, model
        self.url = f"http://127.0.0.1:{port}/v1"
        self.process = Process(f"bench-{name}", cmd)
        self.process.wait_healthy(f"{self.url}/models", 600)

    def stop(self) -> None:
        self.process.stop(timeout=60)

    def stream(self, prompt: str, max_tokens: int, eos_id: int) -> tuple[float, float, int, int]:
        """(time to first token, time of last token, tokens received, prompt tokens) for one stream."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "logit_bias": {str(eos_id): -100}, "stream_options": {"include_usage": True}}  # fmt: skip
        start = time.perf_counter()
        first = last = None
        chunks = 0
        prompt_tokens = 0
        with httpx.stream("POST", f"{self.url}/completions", json=body, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    prompt_tokens = data["usage"]["prompt_tokens"]
                if data.get("choices") and data["choices"][0].get("text"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
        return (first or time.perf_counter()) - start, (last or time.perf_counter()) - start, chunks, prompt_tokens


def measure(server: Server, eos_id: int, n_prompt: int) -> dict[str, float]:
    """n_prompt: the prompt's token count (same GGUF vocabulary on both sides; ours matches llama.cpp's)."""
    server.stream("Hello", 4, eos_id)  # warm-up
    ttft, _, _, _ = server.stream(PROMPT, 1, eos_id)
    prefill = n_prompt / ttft
    ttft, last, chunks, _ = server.stream("Once upon a time", 128, eos_id)
    decode = (chunks - 1) / (last - ttft)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: server.stream(f"Story number {i}: once upon a time", 64, eos_id), range(8)))
    concurrent_tps = sum(r[2] for r in results) / (time.perf_counter() - start)
    return {"prefill": prefill, "decode": decode, "concurrent8": concurrent_tps, "prompt_tokens": n_prompt}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quantize", default="auto", choices=["none", "int8", "int4", "int4x2", "auto"])
    parser.add_argument("--llama-python", default=os.environ.get("LLAMA_CPP_PYTHON", "/root/bench-venv/bin/python"))
    parser.add_argument("--models", default="gemma3,smollm2")
    parser.add_argument("--torch-path", action="store_true", help="also ours with --no-fused-decode (before/after)")
    args = parser.parse_args()
    threads = os.cpu_count() or 2
    specs = {
        "gemma3": ("gemma-3-270m", packaged.gemma3_gguf(), 1),  # (served id, gguf, eos token id)
        "smollm2": ("smollm2-135m-instruct", packaged.smollm2_gguf(), 2),
    }
    rows = []
    for key in args.models.split(","):
        model_id, gguf, eos_id = specs[key]
        n_prompt = len(Tokenizer.from_dir(resolve_source(f"packaged:{key}")).encode(PROMPT, add_special_tokens=True))
        ours_cmd = [sys.executable, "-m", "inference", "serve", "--quantize", args.quantize,
                    "--model", f"{model_id}=packaged:{key}:completion"]  # fmt: skip
        # llama.cpp at its best settings here: no logits for every prompt position, all threads, and
        # queueing concurrent requests (by default a new request silently cuts the running stream off)
        peer_cmd = [args.llama_python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", model_id,
                    "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads),
                    "--logits_all", "False", "--interrupt_requests", "False"]  # fmt: skip
        servers = [("ours", ours_cmd), ("llama.cpp", peer_cmd)]
        if args.torch_path:
            servers.insert(1, ("ours, torch path", [*ours_cmd, "--no-fused-decode"]))
        results: dict[str, list[dict]] = {name: [] for name, _ in servers}
        for _ in range(args.rounds):  # alternate, one server up at a time
            for name, cmd in servers:
                port = free_port()
                server = Server(name, [*cmd, "--port", str(port)], port, model_id)
                try:
                    results[name].append(measure(server, eos_id, n_prompt))
                finally:
                    server.stop()
        med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
        rows.append((model_id, med))
        print(json.dumps({model_id: med}, indent=1), flush=True)
    torch_column = " ours, torch path |" if args.torch_path else ""
    print(f"\n| model | metric | ours ({args.quantize}) |{torch_column} llama.cpp | ratio |")
    print("|---|---|---|---|---|" + ("---|" if args.torch_path else ""))
    for model_id, med in rows:
        for metric, label in [("prefill", "prefill tok/s (~512-token prompt)"), ("decode", "decode tok/s, batch 1"),
                              ("concurrent8", "total tok/s, 8 concurrent streams")]:  # fmt: skip
            ours, peer = med["ours"][metric], med["llama.cpp"][metric]
            middle = f" {med['ours, torch path'][metric]:.1f} |" if args.torch_path else ""
            print(f"| {model_id} | {label} | {ours:.1f} |{middle} {peer:.1f} | {ours / peer:.2f}x |")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_inference.py --rounds {args.rounds} "
          f"--quantize {args.quantize} --llama-python {args.llama_python}"
          + (" --torch-path" if args.torch_path else ""))  # fmt: skip


if __name__ == "__main__":
    main()
