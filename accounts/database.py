"""What the hub's parts share about the database itself, below every app that uses it (``accounts`` imports no
``hub``): whether an exception means the database is unreachable."""

from __future__ import annotations

import sqlite3

from django.db import InterfaceError, OperationalError

# SQLite (the embedded default) raises OperationalError for a query it cannot run too ("malformed JSON", "no such
# table"): a bug to log with its traceback, not a database to wait for. Only these mean it cannot be used now.
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open database", "disk i/o error",
                       "database or disk is full")  # fmt: skip


def database_unreachable(exc: BaseException) -> bool:
    """The database is down or out of connections (not a bad query): the client may retry.

    psycopg's ``OperationalError`` (refused, reset, a pool timeout) and ``InterfaceError`` (a closed connection)
    reach Django code as Django's classes of the same names. SQLite's, only when it is locked, cannot be opened or
    its disk fails."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    if isinstance(exc.__cause__, sqlite3.Error):
        return any(reason in str(exc.__cause__).lower() for reason in _SQLITE_UNAVAILABLE)
    return True
