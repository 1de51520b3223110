"""``truncation: "auto"``'s cut (``hub/api/truncation.py``), with a stand-in for our service's count (a message's
words; the live test, ``tests/e2e/test_responses_truncation.py``, counts with the model's tokenizer): the first cut
before a user's message that fits, found in a few counts; nothing counted when the bound fits; left whole when no
cut helps or none is possible, and for external deployments."""

from __future__ import annotations

import asyncio

import pytest

from hub.api import truncation
from hub.api.responses_relay import ResponsePlan
from hub.api.upstream import ModelInfo, Target

OWN = Target(1, "http://own/v1", "m", "", external=False)
EXTERNAL = Target(2, "http://ext/v1", "m", "", external=True)


def _plan(roles: list[str], out: int | None = 4) -> ResponsePlan:
    items = [{"type": "message", "role": role, "content": [{"type": "input_text", "text": " ".join(["w"] * 50)}]}
             for role in roles]  # fmt: skip
    plan = ResponsePlan({"model": "m", "instructions": "Be brief."}, "m", [], items, {})
    plan.chat = {"model": "m", "messages": truncation._cut(plan, 0)["messages"]}
    if out is not None:
        plan.chat["max_completion_tokens"] = out
    return plan


@pytest.fixture
def counts(monkeypatch) -> list[int]:
    """Each count asked for; a prompt's tokens are its messages' words."""
    asked: list[int] = []

    async def count(plan: ResponsePlan, targets, request_id) -> int:
        assert targets == [OWN]
        words = sum(len(str(m["content"]).split()) for m in plan.chat["messages"])
        asked.append(words)
        return words

    monkeypatch.setattr(truncation.responses_count, "count", count)
    return asked


def _fit(plan: ResponsePlan, length: int, targets=(OWN,)) -> None:
    info = ModelInfo("m", "chat", length, 64, 0, True)
    asyncio.run(truncation.fit(plan, info, list(targets), "req_1"))


def _kept(plan: ResponsePlan) -> list[str]:
    return [m["role"] for m in plan.chat["messages"]]


def test_the_first_cut_before_a_users_message_that_fits(counts):
    plan = _plan(["user", "assistant"] * 6 + ["user"])  # 13 messages of 50 words, and the instructions
    _fit(plan, 260)  # room for 256: the instructions and 5 messages
    assert _kept(plan) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert len(counts) <= 1 + 3  # the whole, then a bisection of 7 starts
    assert len(plan.items) == 13  # the plan's context itself is whole (it is stored)


def test_nothing_is_counted_when_the_bound_fits(counts):
    plan = _plan(["user", "assistant", "user"])
    _fit(plan, 4096)
    assert counts == [] and len(plan.chat["messages"]) == 4


def test_a_context_no_cut_fits_is_cut_to_its_last_users_message_and_refused_by_the_service(counts):
    plan = _plan(["user", "assistant", "user"])
    _fit(plan, 60)
    assert _kept(plan) == ["system", "user"]  # still over: the service answers context_length_exceeded


def test_left_whole_with_no_user_message_to_cut_before_or_an_external_deployment(counts):
    plan = _plan(["assistant", "assistant"])
    _fit(plan, 60)
    assert len(plan.chat["messages"]) == 3 and len(counts) == 1  # the whole counted: over, and nothing to cut
    plan = _plan(["user", "assistant", "user"])
    _fit(plan, 60, targets=(EXTERNAL,))  # it truncates by itself: sent "truncation"
    assert len(plan.chat["messages"]) == 4 and len(counts) == 1
