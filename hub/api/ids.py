"""Ids of the Responses API's objects and items: a prefix and 48 hex digits (``resp_...``, ``msg_...``,
``mcp_...``)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"
