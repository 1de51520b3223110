"""Prefix-aware routing: which of a model's deployments most likely holds a request's prompt prefix in its KV cache.

Each inference service caches the KV of prompt prefixes it computed (``inference/engine/block_manager.py``), so a
conversation's next turn, or a request repeating a long system prompt or the same tools, is cheapest on the
deployment that served the earlier one. The gateway has no tokenizer; it keys a request by what starts its prompt:
a chat's tools, system messages and first user message (what every later turn repeats first), a completion's first
``PREFIX_BYTES`` of prompt. Rendezvous hashing ranks the deployments for that key (the same key always prefers the
same deployment; adding or removing one moves only its own keys) and a load bound skips a preferred deployment that
has clearly more requests in flight than the least busy one, so one popular prefix does not flood one deployment.
Requests without a key keep least-outstanding order.
"""

from __future__ import annotations

import hashlib
import json

PREFIX_BYTES = 1024  # of a completion's prompt: enough to tell system prompts and documents apart
# A preferred deployment is passed over only when it is clearly busier than the least busy one (SGLang's router's
# balance thresholds): more than BALANCE_ABS requests in flight beyond it, and more than BALANCE_REL times as many.
# A tight bound (a share of the average) diverts a conversation's turns whenever a few requests overlap, which on
# two deployments cost a sixth of the cache hits (benchmarks/bench_prefix_routing.py).
BALANCE_ABS = 8
BALANCE_REL = 1.5


def prefix_key(route: str, body: dict) -> str | None:
    """What starts the request's prompt, hashed; None where there is nothing to key by."""
    if route == "chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        head = []
        for message in messages:  # the system messages, then the first user message
            head.append(message)
            if isinstance(message, dict) and message.get("role") not in ("system", "developer"):
                break
        parts = [body.get("tools"), head]
    elif route == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        parts = [prompt[:PREFIX_BYTES] if isinstance(prompt, (str, list)) else None]
    else:
        return None
    try:
        raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _score(key: str, deployment_id: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}:{deployment_id}".encode(), digest_size=8).digest(), "big")


def rank(key: str, ids: list[int], outstanding: dict[int, int]) -> list[int]:
    """``ids`` (healthy deployments) in the order to try them for ``key``: by rendezvous score, those over the load
    bound moved behind the others in least-outstanding order."""
    if len(ids) < 2:
        return list(ids)
    least = min(outstanding.get(i, 0) for i in ids)

    def overloaded(i: int) -> bool:
        load = outstanding.get(i, 0)
        return load - least > BALANCE_ABS and load > BALANCE_REL * least

    preferred = sorted(ids, key=lambda i: _score(key, i), reverse=True)
    within = [i for i in preferred if not overloaded(i)]
    over = sorted((i for i in preferred if overloaded(i)), key=lambda i: outstanding.get(i, 0))
    return within + over
