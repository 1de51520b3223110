"""The database from async code that runs outside a request (a batch's runner, a vector store's indexer): each call
on a pool thread of its own, which hands its connection back afterwards."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections


async def db(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a pool thread, its connection handed back afterwards."""

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(run, thread_sensitive=False)()
