"""The console's pages of one tenant (acme), for the tests that walk them all."""

from __future__ import annotations

from accounts import services


def acme_pages(acme) -> list[str]:
    """Every page of tenant acme, one key issued so that its page exists."""
    key = services.issue_key(acme.tenant, name="existing").key
    base = "/console/t/acme"
    return [
        f"{base}/", f"{base}/keys/", f"{base}/keys/{key.pk}/", f"{base}/members/", f"{base}/models/",
        f"{base}/usage/", f"{base}/usage.csv", f"{base}/playground/", f"{base}/webhooks/",
    ]  # fmt: skip
