"""What re-ranking adds to a vector store search (``ranking_options.ranker`` with ``HUB_VECTOR_STORE_RERANK_MODEL``):
``POST /v1/rerank`` of one query and the best 50 chunks on our inference service, against sentence-transformers'
``CrossEncoder.predict`` on the same checkpoint in this process (the peer: what a reranker in the application costs).

The checkpoint has cross-encoder/ms-marco-MiniLM-L-6-v2's shape (BERT, 6 layers, 384 wide, 12 heads, one label,
all-MiniLM-L6-v2's WordPiece tokenizer), written by transformers with random weights (no model hub here: the time
does not depend on the weights). The chunks are ``--words`` words of English each (a vector store's default chunk is
800 tokens, cut to the model's 512). Ours and the peer's alternate, ``--rounds`` each; medians in ms. Our scores are
checked against the peer's (1e-3).

    .venv/bin/python benchmarks/bench_rerank.py [--rounds 7] [--chunks 50] [--words 150]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.processes import Process, free_port  # noqa: E402

WORDS = (
    "the of and to in is was for on that with as by at from his her an were which are this be has had it not "
    "city river museum tower capital language plants sunlight water library threads sockets glucose oxygen "
    "leaves paris france python modules light process standard largest visited world green carbon"
).split()


def checkpoint(path: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from inference.packaged import minilm_dir

    torch.manual_seed(0)
    shape = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, num_labels=1, **shape)
    BertForSequenceClassification(config).eval().save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir() / name, path / name)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--words", type=int, default=150)
    args = parser.parse_args()
    from sentence_transformers import CrossEncoder

    root = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    path = checkpoint(root / "ms-marco-minilm-l6-shape")
    rng = np.random.default_rng(0)
    chunks = [" ".join(rng.choice(WORDS, size=args.words)) for _ in range(args.chunks)]
    query = "What is the capital of France?"
    port = free_port()
    service = Process("inference", [sys.executable, "-m", "inference", "serve", "--port", str(port), "--model",
                                    f"rerank={path}:rerank"], {**os.environ})  # fmt: skip
    peer = CrossEncoder(str(path), device="cpu")
    try:
        service.wait_healthy(f"http://127.0.0.1:{port}/health", 600)
        body = {"model": "rerank", "query": query, "documents": chunks, "return_documents": False}
        ours, theirs = [], []
        with httpx.Client(timeout=120) as client:
            for _ in range(args.rounds + 1):  # the first round of each warms up, and is left out
                t0 = time.perf_counter()
                answer = client.post(f"http://127.0.0.1:{port}/v1/rerank", json=body).raise_for_status().json()
                t1 = time.perf_counter()
                expected = peer.predict([(query, c) for c in chunks], batch_size=args.chunks)
                t2 = time.perf_counter()
                ours.append((t1 - t0) * 1000)
                theirs.append((t2 - t1) * 1000)
                got = np.zeros(args.chunks)
                for result in answer["results"]:
                    got[result["index"]] = result["relevance_score"]
                np.testing.assert_allclose(got, expected, atol=1e-3)
        tokens = answer["usage"]["prompt_tokens"]
        print(f"{args.chunks} chunks of {args.words} words ({tokens} tokens with the query), medians of "
              f"{args.rounds} in ms:")  # fmt: skip
        print(f"  ours (POST /v1/rerank, HTTP included): {statistics.median(ours[1:]):8.1f}")
        print(f"  sentence-transformers CrossEncoder.predict: {statistics.median(theirs[1:]):8.1f}")
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_rerank.py --rounds {args.rounds} --chunks {args.chunks} "
          f"--words {args.words}")  # fmt: skip


if __name__ == "__main__":
    main()
