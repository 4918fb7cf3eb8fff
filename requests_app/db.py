"""Statements PostgreSQL plans once per connection.

Django's cursors bind parameters on the client (psycopg's ClientCursor): a
statement reaches the server as text with every value written into it, to
be parsed and planned each time. For the hot statements that run the same
way thousands of times (a patient's submission: a hundred values, five
tables, where planning took as long as running it; an email marked sent,
once per email) that is work for nothing. ``prepared_statement_cursor``
binds on the server instead (Django's own ServerBindingCursor class), and
psycopg prepares each statement on its first run on a connection and runs
the prepared plan after. settings.py turns that on with
``OPTIONS["prepare_threshold"]`` (DATABASE_PREPARED_STATEMENTS, on unless
a connection pooler in transaction mode cannot take it); Django's other
cursors bind on the client and never prepare, whatever it says.

It is Django's cursor wrapper around the cursor: execute wrappers, query
logging and database error translation are as for any other. PostgreSQL
only.
"""

from __future__ import annotations

from typing import Any

from django.db import connection


def prepared_statement_cursor() -> Any:
    """A cursor on the default database whose statements are prepared."""
    # Defined there with psycopg 3 only, the driver this project pins.
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
