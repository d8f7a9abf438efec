"""Database helpers shared by the hot paths (attempt, release, token lookup, submission)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connection


@contextmanager
def prepared_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A server-binding cursor for statements run with ``execute(..., prepare=True)``.

    Django disables psycopg's prepared statements and binds parameters client-side. The hot
    statements (the claim, a step's result, the success, the release, the API's token lookup and
    job insert) cost PostgreSQL as much to plan as to run; prepared, they are planned once per
    connection, unless DATABASE_PREPARED_STATEMENTS is off, which makes ``prepare=True`` a no-op.
    Server-side binding also skips psycopg's Python quoting of every parameter. Errors are
    Django's, as from ``connection.cursor()``, so callers that retry on OperationalError still
    see them.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
