"""API key secrets: generation, parsing and hashing.

A secret looks like ``sk-hub-<8 char id><40 char secret>`` (base62). The first 15 characters
(``sk-hub-`` + id) are the visible, indexed prefix; the whole secret is stored only as
SHA-256. Secrets carry ~238 bits of randomness, so a fast hash is safe (no stretching needed)
and keeps authentication cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

SECRET_PREFIX = "sk-hub-"
_ALPHABET = string.ascii_letters + string.digits
_ID_LEN = 8
_BODY_LEN = 40
PREFIX_LEN = len(SECRET_PREFIX) + _ID_LEN
SECRET_LEN = PREFIX_LEN + _BODY_LEN


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def generate_secret() -> str:
    return SECRET_PREFIX + _random(_ID_LEN) + _random(_BODY_LEN)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prefix_of(secret: str) -> str | None:
    """The lookup prefix of a well-formed secret, else None (malformed keys never hit the DB)."""
    if len(secret) != SECRET_LEN or not secret.startswith(SECRET_PREFIX):
        return None
    if not all(c in _ALPHABET for c in secret[len(SECRET_PREFIX) :]):
        return None
    return secret[:PREFIX_LEN]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return bool(stored_hash) and hmac.compare_digest(hash_secret(secret), stored_hash)
