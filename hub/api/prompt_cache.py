"""Each tenant its own prompt cache on our deployments, as OpenAI's prompt caches are not shared between
organizations.

Our inference service caches the KV of prompt prefixes and reuses them for any later request that starts the same
way (``inference/engine/block_manager.py``). Shared between tenants, that cache would tell one tenant what another
sent: a prompt another tenant sent first comes back faster and with ``cached_tokens``. So the hub gives every
request to our service vLLM's ``cache_salt``, a keyed hash of its tenant (and of the ``cache_salt`` the client sent,
if any, so that a tenant can split its own cache further, per end user say); the service keys cached blocks by it
too, and prompts of different tenants share none. The key is the hub's secret, the same on every hub process, so
a tenant's requests share their cache whichever process relays them. ``HUB_PROMPT_CACHE_SCOPE=shared`` leaves the
cache shared (only a client's own salt splits it). An external deployment is sent the body as the client wrote it.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

ROUTES = ("chat/completions", "completions", "responses", "responses/compact", "moderations")
FIELD = "cache_salt"  # vLLM's name


def tenant_salt(tenant_id: int, own: str | None) -> str:
    """The salt a tenant's request is cached under: its tenant and the client's own salt, hashed with the hub's key."""
    return salted_hmac("hub.prompt_cache", f"{tenant_id}\0{own or ''}").hexdigest()[:32]


def salt(payload: dict, tenant_id: int | None, external: bool) -> dict:
    """``payload`` (the body sent to a deployment) with its ``cache_salt``, in place."""
    if external or tenant_id is None or settings.HUB_PROMPT_CACHE_SCOPE == "shared":
        return payload
    payload[FIELD] = tenant_salt(tenant_id, payload.get(FIELD))  # the client's own: a string, checked at the edge
    return payload
