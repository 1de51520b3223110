"""Budgets on a live hub in front of the real models, through the OpenAI SDK: a tenant budget that concurrent
requests cannot overshoot, with plain prompts and with prompts that are mostly tools and a JSON schema (what the
service's templates make of them is what is metered). The limits that need no model (requests per minute, prompts
reserved again, concurrent streams, two hubs sharing a limit) are in test_relay.py, against a fake service."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai import AsyncOpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import UsageRecord
from tests.support.live import CHAT, barrier

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BUDGET = 3 * (6 + 8 + 64 + 16) + 10


def test_a_tenant_budget_holds_under_concurrent_requests(hub):
    """A budget fits three worst cases (a prompt's bound: its 6 bytes, 8 for the message, 64 for the template;
    plus 16 to generate); eight requests at once: three run, the rest get insufficient_quota, and what was
    metered stays within the budget. (A fourth may run if a loaded machine admits it only after two others have
    finished and given back what they reserved and did not use: the budget still holds.)"""
    other = services.create_tenant("tight", "Tight")
    services.grant_models(other, [CHAT])
    issued = services.issue_key(other, name="k")
    services.set_limits(other, Limits(budget=BUDGET, budget_period="day"))

    async def burst():
        client = AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
        return await asyncio.gather(
            *(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Say hi"}],
                                             max_tokens=16) for _ in range(8)),
            return_exceptions=True,
        )  # fmt: skip

    results = asyncio.run(burst())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) + len(refused) == 8 and len(ok) >= 3 and refused, results
    assert all(r.response.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert refused[0].response.headers["x-should-retry"] == "false"
    barrier(hub)
    metered = UsageRecord.objects.filter(tenant=other)
    assert metered.count() == len(ok)
    assert sum(r.total_tokens for r in metered) == sum(r.usage.total_tokens for r in ok) <= BUDGET


def _tool(i: int) -> dict:
    """A tool of a realistic size (~500 bytes of JSON schema)."""
    fields = {f"field_{j}": {"type": "string", "description": f"The {j}th detail of the order, e.g. item {j}"}
              for j in range(6)}  # fmt: skip
    return {"type": "function", "function": {
        "name": f"lookup_{i}", "description": f"Look up record {i} of the customer's orders and return its details.",
        "parameters": {"type": "object", "properties": fields, "required": list(fields)},
    }}  # fmt: skip


TOOLS_BODY = {
    "model": CHAT, "messages": [{"role": "user", "content": "Find my last order."}], "max_tokens": 8,
    "tools": [_tool(i) for i in range(8)],
    "response_format": {"type": "json_schema", "json_schema": {"name": "order", "strict": True, "schema": {
        "type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "number"}},
        "required": ["id", "total"], "additionalProperties": False}}},
}  # fmt: skip


def test_a_budget_holds_with_tools_and_a_schema_in_the_prompt(hub):
    """Fifty requests at once whose prompts are mostly tools (eight, each listed with an example call) and a JSON
    schema, against a budget of two and a half of their reservations: what is metered stays within the budget (a
    reservation that counted only the messages would let every request in and spend ~20 times the budget)."""
    from accounts.models import ServedModel
    from hub.api.ratelimit import estimate
    from hub.api.upstream import ModelInfo

    other = services.create_tenant("tools", "Tools")
    services.grant_models(other, [CHAT])
    issued = services.issue_key(other, name="k")
    row = ServedModel.objects.get(id=CHAT)
    info = ModelInfo(CHAT, row.kind, row.max_sequence_length, row.max_output_length, row.hidden_size, True)
    reservation = estimate("chat/completions", TOOLS_BODY, info).total
    budget = reservation * 5 // 2
    services.set_limits(other, Limits(budget=budget, budget_period="day"))

    async def burst():
        client = AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
        body = {k: v for k, v in TOOLS_BODY.items() if k != "model"}
        return await asyncio.gather(
            *(client.chat.completions.create(model=CHAT, **body) for _ in range(50)), return_exceptions=True
        )

    results = asyncio.run(burst())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) + len(refused) == 50 and ok, results
    assert all(r.response.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert min(r.usage.prompt_tokens for r in ok) > 8 * 100  # the tools are in the prompt
    barrier(hub)
    metered = UsageRecord.objects.filter(tenant=other)
    assert sorted(r.total_tokens for r in metered) == sorted(r.usage.total_tokens for r in ok)
    assert sum(r.total_tokens for r in metered) <= budget
