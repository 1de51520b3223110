"""Secrets the hub must read again (a webhook endpoint's signing secret, which signs every delivery), sealed in the
database: encrypted and authenticated (Fernet: AES-128-CBC and HMAC-SHA256) with a key derived from
``HUB_SECRET_KEY`` (HKDF-SHA256), so that a copy of the database alone does not give them away.

A sealed value reads ``sealed:v1:<token>``; a value without that prefix (written before sealing) is read as it is.
Rotating ``HUB_SECRET_KEY``: put the old key in ``HUB_SECRET_KEY_FALLBACKS`` (Django's ``SECRET_KEY_FALLBACKS``),
whose keys still open what they sealed; ``manage.py reseal_secrets`` seals everything again with the new key."""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "sealed:v1:"
_INFO = b"llm-hub sealed secrets v1"


class Unreadable(Exception):
    """A sealed value no key in use opens (``HUB_SECRET_KEY`` changed without its fallback)."""


@functools.cache
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    """The current key first (it seals), then the fallbacks (they open)."""
    return MultiFernet([_fernet(k) for k in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]])


def seal(value: str) -> str:
    return "" if not value else PREFIX + _keys().encrypt(value.encode()).decode()


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def unseal(value: str) -> str:
    if not is_sealed(value):
        return value
    try:
        return _keys().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise Unreadable("A sealed secret could not be opened: HUB_SECRET_KEY changed without the old key in "
                         "HUB_SECRET_KEY_FALLBACKS.") from None  # fmt: skip


def reseal(value: str) -> str:
    """``value`` sealed with the current key (opened with any key in use, or read as it is)."""
    return seal(unseal(value)) if value else value
