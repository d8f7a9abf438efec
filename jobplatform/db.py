"""Database helpers: the hot paths' prepared statements (attempt, release, token lookup,
submission), and the direct connection of the dispatcher's LISTEN."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections


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
    # The thread's connection looked up once: each ``connection.<attribute>`` is a lookup in
    # Django's thread- and task-local handler (asgiref), 2 µs apiece, on every hot statement.
    wrapper = connections[DEFAULT_DB_ALIAS]
    wrapper.ensure_connection()
    with wrapper.wrap_database_errors, psycopg.Cursor(wrapper.connection) as cursor:
        yield cursor


def direct_connect(**kwargs: Any) -> psycopg.Connection[Any]:
    """A connection of its own straight to PostgreSQL, for what needs a session: LISTEN.

    Behind a pooler in transaction mode DATABASE_URL reaches the pooler, which hands each
    transaction to whichever server connection is free: a LISTEN there would listen on a session
    the dispatcher does not keep. DATABASE_DIRECT_URL names PostgreSQL itself; unset, the default
    database is direct already. The parameters are the ones Django connects with
    (``get_connection_params``), so every option of the URL (sslmode, options, application_name,
    target_session_attrs...) and DATABASE_PASSWORD apply here too.
    """
    default = connections[DEFAULT_DB_ALIAS]
    settings_dict = default.settings_dict
    if settings.DATABASE_DIRECT is not None:
        direct = settings.DATABASE_DIRECT
        settings_dict = {
            **settings_dict,
            **{key: direct.get(key, "") for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
            "OPTIONS": dict(direct.get("OPTIONS", {})),
        }
    params = type(default)(settings_dict, alias="direct").get_connection_params()
    return psycopg.connect(**(params | kwargs))
