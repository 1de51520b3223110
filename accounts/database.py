"""What the hub's parts share about the database itself, below every app that uses it (``accounts`` imports no
``hub``): whether an exception means the database is unreachable."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError


def database_unreachable(exc: BaseException) -> bool:
    """The database is down or out of connections (not a bad query): the client may retry.

    psycopg's ``OperationalError`` (refused, reset, a pool timeout) and ``InterfaceError`` (a closed connection)
    reach Django code as Django's classes of the same names."""
    return isinstance(exc, (OperationalError, InterfaceError))
