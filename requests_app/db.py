"""Statements PostgreSQL plans once per connection.

Django's cursors bind parameters on the client (psycopg's ClientCursor): a
statement reaches the server as text with every value written into it, to
be parsed and planned each time. For the hot statements that run the same
way thousands of times (a patient's submission: a hundred values, five
tables, where planning took as long as running it; an email marked sent,
once per email) that is work for nothing. ``prepared_statement_cursor``
binds on the server instead, and psycopg prepares each statement on its
first run on a connection and runs the prepared plan after. settings.py
turns that on with ``OPTIONS["prepare_threshold"]``
(DATABASE_PREPARED_STATEMENTS, on unless a connection pooler in
transaction mode cannot take it); Django's other cursors bind on the
client and never prepare, whatever it says.

The cursor is psycopg's RawCursor, which takes PostgreSQL's own ``$1``
placeholders as they are: psycopg's usual cursor finds the ``%s`` of a
statement on every run, and keeps what it found only for statements of
at most 50 parameters and 4 KB — a submission's has about a hundred and
6 KB, so every submission paid 0.4 ms to have it split again. Callers
still write ``%s`` (and ``%%``); ``numbered`` turns a statement into
``$n`` once per process.

It is Django's cursor wrapper around the cursor: execute wrappers, query
logging and database error translation are as for any other. PostgreSQL
only.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.db import connection

_PLACEHOLDER = re.compile(r"%([s%])")


@functools.lru_cache(maxsize=64)
def numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders numbered ``$1``, ``$2``… in order
    and each ``%%`` a plain ``%``; any other ``%`` is refused, as psycopg
    refuses it."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(1) == "%":
            return "%"
        count += 1
        return f"${count}"

    if re.search(r"%(?![s%])", _PLACEHOLDER.sub("", sql)):
        raise ValueError("only %s placeholders (and %% for a percent sign) are taken")
    return _PLACEHOLDER.sub(number, sql)


@functools.cache
def _cursor_class() -> type:
    import psycopg

    # Defined there with psycopg 3 only, the driver this project pins.
    from django.db.backends.postgresql.base import CursorMixin  # type: ignore[attr-defined]

    class NumberedCursor(CursorMixin, psycopg.RawCursor):
        """A RawCursor (server-side binding, ``$n`` placeholders) that takes
        the ``%s`` statements the rest of the code writes."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            return super().execute(numbered(query) if isinstance(query, str) else query, params, **kwargs)

    return NumberedCursor


def prepared_statement_cursor() -> Any:
    """A cursor on the default database whose statements are prepared."""
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = _cursor_class()(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
