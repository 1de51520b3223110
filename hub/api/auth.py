"""``Authorization: Bearer <secret>`` → KeyContext, or the matching 401."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connection

from accounts.authn import AuthFailed, Failure, KeyContext, authenticate_secret
from accounts.services import touch_last_used
from hub.api.errors import AuthenticationError

_MESSAGES = {
    None: (
        "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
        "(i.e. Authorization: Bearer YOUR_KEY)."
    ),
    Failure.MALFORMED: "Incorrect API key provided. Keys look like sk-hub-… ; ask your hub administrator for one.",
    Failure.UNKNOWN: "Incorrect API key provided. Ask your hub administrator for a valid key.",
    Failure.REVOKED: "This API key has been revoked.",
    Failure.EXPIRED: "This API key has expired.",
    Failure.TENANT_DISABLED: "This API key belongs to a disabled tenant.",
}


def bearer_secret(authorization: str | None) -> str:
    """The secret from the header; raises 401 when missing. Never includes the secret in errors."""
    if not authorization:
        raise AuthenticationError(_MESSAGES[None], code="missing_api_key")
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationError(_MESSAGES[None], code="missing_api_key")
    return secret.strip()


def _authenticate_sync(secret: str) -> KeyContext:
    try:
        ctx = authenticate_secret(secret)
        touch_last_used(ctx.key_id)
        return ctx
    except AuthFailed as failure:
        code = {Failure.REVOKED: "api_key_revoked", Failure.EXPIRED: "api_key_expired"}.get(failure.reason)
        raise AuthenticationError(_MESSAGES[failure.reason], code=code) from None
    finally:
        # Runs in an executor thread outside any request: hand the connection back
        # (to the pool on PostgreSQL) instead of leaving one open per thread.
        if connection.connection is not None:
            connection.close()


async def authenticate(authorization: str | None) -> KeyContext:
    secret = bearer_secret(authorization)
    return await sync_to_async(_authenticate_sync, thread_sensitive=False)(secret)
