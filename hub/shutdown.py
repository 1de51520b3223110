"""A hub process being stopped (SIGTERM from Kubernetes, the balancer's host going away, Ctrl-C): streams in
flight get ``HUB_SHUTDOWN_GRACE_SECONDS`` to finish, then end with an error event the client can act on (retry:
the balancer already sends new requests to the other hubs) and are metered with what they produced, before
uvicorn's own graceful timeout closes their connections.

uvicorn installs its signal handlers when it starts serving, after the app is imported, in each worker process;
``watch`` chains onto them from the event loop's (main) thread the first time a request arrives.
"""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings

_deadline: float | None = None
_watching = False


def _begin() -> None:
    global _deadline
    if _deadline is None:
        _deadline = time.monotonic() + settings.HUB_SHUTDOWN_GRACE_SECONDS


def watch() -> None:
    """Chain onto this process's SIGTERM and SIGINT handlers (once; only from the main thread, where they run)."""
    global _watching
    if _watching or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum, frame, previous=previous):
            _begin()
            if callable(previous):
                previous(signum, frame)
            else:  # no server's handler: the default action, as if we were not here
                signal.signal(signum, previous)
                signal.raise_signal(signum)

        signal.signal(sig, handler)
    _watching = True


class ShuttingDown(Exception):
    """Raised in a relay when ``over()``: the stream ends with an error event and is metered."""

    message = "This hub process is shutting down and ended the stream; retry the request."


def over() -> bool:
    """Whether this process is stopping and its streams' grace period has run out."""
    return _deadline is not None and time.monotonic() >= _deadline
