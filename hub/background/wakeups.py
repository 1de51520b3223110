"""Wake-ups of background streams across processes. A streamed background response is written by the process that
runs it (a Celery worker) and read by the hub processes its clients stream from; without a word between them, a
stream polls the database (``tail.POLL_SECONDS``). With Redis, a run announces each write, and a cancel or a failure
its end, on one channel (``announce``); each hub process with clients streaming listens on it (one thread,
``listen``) and wakes its own (``tail.wake``), and polls only now and then (``tail.LISTENING_POLL_SECONDS``) for a
message lost (Redis restarting). Without Redis (``make run``: one process) there is nothing to cross."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_client: redis.Redis | None = None
_listener: threading.Thread | None = None
_subscribed = threading.Event()


def channel() -> str:
    return f"{settings.HUB_CACHE_PREFIX}:background-wake"


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:  # thread-safe (a connection pool); a second at most to give up on a Redis gone
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
        return _client


def announce(response_id: str) -> None:
    """The response's stream has more, or ended: the clients streaming it in every process read it now. Never
    raises: a wake-up lost costs its clients one poll. Blocking (a second at most): from a loop, in a thread."""
    if not settings.REDIS_URL:
        return
    try:
        _redis().publish(channel(), response_id)
    except redis.RedisError as failed:
        log.debug("background wake-up of %s not announced: %r", response_id, failed)


def listening() -> bool:
    """Whether this process hears the announcements now (its clients may poll seldom)."""
    return _subscribed.is_set()


def listen(wake: Callable[[str], None]) -> None:
    """Start this process's listener, once (with Redis): each announcement calls ``wake(response_id)``."""
    global _listener
    if not settings.REDIS_URL:
        return
    with _lock:
        if _listener is None:
            _listener = threading.Thread(target=_listen, args=(wake,), name="background-wakeups", daemon=True)
            _listener.start()


def _listen(wake: Callable[[str], None]) -> None:
    while True:
        try:
            # its own connection, with no read timeout: it waits for messages
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, health_check_interval=30)
            with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                pubsub.subscribe(channel())
                _subscribed.set()
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        wake(message["data"].decode())
        except Exception as failed:  # noqa: BLE001 - Redis gone: its clients poll the database meanwhile
            log.warning("background wake-ups unheard (%r); streams poll until Redis is back", failed)
        _subscribed.clear()
        time.sleep(1.0)
