"""The audit log of sign-ins (logger ``hub.audit``): each failed password and each lockout, with the username
tried, the client's address and the page, so an operator sees a brute-force attempt in the hub's log."""

from __future__ import annotations

import logging

from axes.helpers import get_client_ip_address
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

log = logging.getLogger("hub.audit")


def _where(request) -> tuple[str, str]:
    if request is None:
        return "-", "-"
    return get_client_ip_address(request) or "-", request.path


@receiver(user_login_failed)
def login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    address, path = _where(request)
    log.warning("sign-in failed: username=%r address=%s page=%s", credentials.get("username"), address, path)


@receiver(user_locked_out)
def locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    log.warning("sign-in locked out: username=%r address=%s page=%s", username, ip_address, _where(request)[1])


@receiver(user_logged_in)
def logged_in(sender, request=None, user=None, **kwargs) -> None:
    address, path = _where(request)
    log.info("signed in: username=%r address=%s page=%s", getattr(user, "username", None), address, path)
