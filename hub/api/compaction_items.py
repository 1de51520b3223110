"""The ``compaction`` items of the Responses API (``POST /v1/responses/compact`` makes them, ``compaction.py``):
``encrypted_content`` holds the model's summary of what it replaced, signed with the hub's secret key and bound
to the tenant (``django.core.signing``, compressed: opaque to clients and tamper-proof, though not encrypted), so
that one sent back as input is shown to the model as that summary, and a forged or another tenant's is refused."""

from __future__ import annotations

from django.core import signing

from hub.api.errors import InvalidRequest

SALT = "hub.responses.compaction"
# how the model sees a compaction item sent back: an assistant turn in place of the turns it replaced
SHOWN = "(A summary of the conversation before this point, written for myself at a context checkpoint.)\n\n{summary}"


def seal(tenant_id: int, summary: str) -> str:
    return signing.dumps({"t": tenant_id, "s": summary}, salt=SALT, compress=True)


def summaries(tenant_id: int, history: list[dict], items: list[dict]) -> dict[str, str]:
    """Each compaction item's summary in the context (the stored ``history``, this request's ``items``), by its
    ``encrypted_content``; a 400 for one this hub did not make for this tenant."""
    found: dict[str, str] = {}
    context = [("previous_response_id", item) for item in history]
    context += [(f"input[{n}].encrypted_content", item) for n, item in enumerate(items)]
    for param, item in context:
        if item.get("type") != "compaction" or item["encrypted_content"] in found:
            continue
        try:
            sealed = signing.loads(item["encrypted_content"], salt=SALT)
        except signing.BadSignature:
            sealed = None
        if not isinstance(sealed, dict) or sealed.get("t") != tenant_id or not isinstance(sealed.get("s"), str):
            raise InvalidRequest(f"The compaction item '{item.get('id')}' was not made by this hub for this project: "
                                 "its encrypted_content cannot be read.", param=param,
                                 code="invalid_encrypted_content")  # fmt: skip
        found[item["encrypted_content"]] = sealed["s"]
    return found


def shown(summary: str) -> dict:
    """A compaction item as the chat message the model reads."""
    return {"role": "assistant", "content": SHOWN.format(summary=summary)}
