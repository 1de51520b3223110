"""Signing a delivery as OpenAI's (Standard Webhooks): ``webhook-id`` (the delivery's id, the same on every attempt),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}`` keyed by the secret's bytes (the base64 after ``whsec_``), one per secret in use,
separated by spaces. ``openai.OpenAI().webhooks.unwrap(body, headers, secret=...)`` verifies it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from accounts.webhooks import SECRET_PREFIX

USER_AGENT = "LLM-Hub-Webhooks/1.0"


def body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(SECRET_PREFIX) :]) if secret.startswith(SECRET_PREFIX) else secret.encode()


def signature(secrets: list[str], message_id: str, timestamp: int, content: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + content
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode() for secret in secrets
    )


def headers(message_id: str, secrets: list[str], content: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of one attempt to send ``content``."""
    timestamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": message_id,
        "webhook-timestamp": str(timestamp), "webhook-signature": signature(secrets, message_id, timestamp, content),
    }  # fmt: skip
