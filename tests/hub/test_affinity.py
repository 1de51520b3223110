"""Prefix-aware routing: what a request is keyed by, the same prefix always preferring one deployment, keys spread
over deployments, the load bound, and benched deployments still last."""

from __future__ import annotations

import time
from collections import Counter

from hub.api.affinity import prefix_key, rank
from hub.api.upstream import Target, Upstreams

SYSTEM = {"role": "system", "content": "You are a helpful assistant of the city library."}


def _chat(*messages, tools=None) -> dict:
    body = {"model": "m", "messages": list(messages)}
    if tools is not None:
        body["tools"] = tools
    return body


def test_a_conversation_keeps_its_key_from_turn_to_turn():
    first = _chat(SYSTEM, {"role": "user", "content": "When do you open?"})
    later = _chat(SYSTEM, {"role": "user", "content": "When do you open?"}, {"role": "assistant", "content": "At 9."},
                  {"role": "user", "content": "And on Sunday?"})  # fmt: skip
    assert prefix_key("chat/completions", first) == prefix_key("chat/completions", later) is not None
    other_user = _chat(SYSTEM, {"role": "user", "content": "Do you lend films?"})
    assert prefix_key("chat/completions", other_user) != prefix_key("chat/completions", first)
    tools = _chat(SYSTEM, {"role": "user", "content": "When do you open?"}, tools=[{"type": "function"}])
    assert prefix_key("chat/completions", tools) != prefix_key("chat/completions", first)  # tools render first


def test_completions_key_by_their_first_kilobyte_and_other_routes_have_none():
    doc = "x" * 2000
    assert prefix_key("completions", {"prompt": doc + "a"}) == prefix_key("completions", {"prompt": doc + "b"})
    assert prefix_key("completions", {"prompt": "a"}) != prefix_key("completions", {"prompt": "b"})
    assert prefix_key("completions", {"prompt": ["same", "other"]}) == prefix_key("completions", {"prompt": "same"})
    assert prefix_key("embeddings", {"input": "a"}) is None
    assert prefix_key("chat/completions", {"messages": "not a list"}) is None


def test_the_same_key_prefers_one_deployment_and_keys_spread():
    ids = [1, 2, 3]
    firsts = Counter(rank(f"key-{i}", ids, {})[0] for i in range(600))
    assert set(firsts) == {1, 2, 3} and min(firsts.values()) > 150  # spread about evenly
    assert all(rank("k", ids, {})[0] == rank("k", list(reversed(ids)), {})[0] for _ in range(3))
    # removing a deployment moves only the keys it held
    moved = sum(rank(f"key-{i}", ids, {})[0] != rank(f"key-{i}", [1, 2], {})[0] for i in range(600))
    assert moved == firsts[3]


def test_a_preferred_deployment_over_the_load_bound_is_passed_over():
    ids = [1, 2]
    key = next(f"k{i}" for i in range(100) if rank(f"k{i}", ids, {})[0] == 1)
    assert rank(key, ids, {1: 8, 2: 0}) == [1, 2]  # 8 more in flight: still within
    assert rank(key, ids, {1: 9, 2: 0}) == [2, 1]  # 9 more: passed over
    assert rank(key, ids, {1: 30, 2: 20}) == [1, 2]  # 10 more, but not 1.5 times as many
    assert rank(key, ids, {1: 31, 2: 20}) == [2, 1]


def _targets(n: int) -> list[Target]:
    return [Target(i, f"http://h{i}/v1", "m", "", False) for i in range(1, n + 1)]


def test_upstreams_order_with_and_without_affinity_and_benched_last():
    up = Upstreams()
    targets = _targets(3)
    up.acquire(targets[0])
    assert [t.deployment_id for t in up.order(targets)] == [2, 3, 1]  # least outstanding without a key
    key = next(f"k{i}" for i in range(200) if rank(f"k{i}", [1, 2, 3], {})[0] == 3)
    assert up.order(targets, key)[0].deployment_id == 3
    up.bench(targets[2])
    ordered = [t.deployment_id for t in up.order(targets, key)]
    assert ordered[-1] == 3 and sorted(ordered) == [1, 2, 3]  # benched: tried last
    up._benched_until[3] = time.monotonic() - 1
    assert up.order(targets, key)[0].deployment_id == 3
