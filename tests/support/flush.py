"""A transactional test's database emptied by ``DELETE``, not by Django's ``flush``.

After each ``django_db(transaction=True)`` test (every live one: the hub it talks to runs in another process, so the
test's data must be committed), Django's ``TransactionTestCase`` runs ``flush``: ``TRUNCATE`` of every table, then
the ``post_migrate`` signal to write the content types and permissions again. On PostgreSQL ``TRUNCATE`` makes new
files for each of the ~45 tables and their indexes: ~130 ms with the signal's ~40 ms, at every one of ~600 tests.
The tables a test fills hold a few rows, which one ``DELETE`` per table (foreign keys checked at commit: Django
makes them deferrable) removes in under a millisecond. The content types and permissions are left as ``migrate``
wrote them, which is what the signal would write again.

Other databases (SQLite, where ``make test`` runs without PostgreSQL), serialized rollback and ``available_apps``
keep Django's teardown."""

from __future__ import annotations

from django.db import connections, transaction
from django.test import TransactionTestCase

KEPT = frozenset({"django_content_type", "auth_permission"})  # migrate's rows, which post_migrate writes again


def empty(alias: str) -> None:
    """Every table of the installed apps emptied, but ``KEPT``, in one transaction."""
    connection = connections[alias]
    tables = [t for t in connection.introspection.django_table_names(only_existing=True, include_views=False)
              if t not in KEPT]  # fmt: skip
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute("".join(f"DELETE FROM {connection.ops.quote_name(table)};" for table in tables))


def install() -> None:
    """``TransactionTestCase``'s teardown by ``empty`` where it applies (see the module's docstring)."""
    flush = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        aliases = self._databases_names(include_mirrors=False)
        if (
            self.serialized_rollback
            or self.available_apps is not None
            or any(connections[alias].vendor != "postgresql" for alias in aliases)
        ):
            return flush(self)
        for alias in aliases:
            empty(alias)

    TransactionTestCase._fixture_teardown = teardown
