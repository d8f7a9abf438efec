"""API authentication: DRF's token scheme, with its lookup as one prepared statement."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from jobplatform.db import prepared_cursor


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, answered exactly as DRF's class answers it.

    DRF looks the token up with ``select_related("user").get(key=...)``: compiling that query took
    a third of a job submission's CPU (docs/performance.md). Here the same join is a prepared
    statement whose row becomes the token and its user through ``Model.from_db``, as the ORM
    would build them.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        row = None
        if len(key) <= _key_max_length() and "\x00" not in key:
            with prepared_cursor() as cursor:
                row = cursor.execute(_token_query(), [key], prepare=True).fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token_fields, user_fields = _token_columns(), _user_columns()
        token = Token.from_db(connection.alias, token_fields, row[: len(token_fields)])
        user = get_user_model().from_db(connection.alias, user_fields, row[len(token_fields) :])
        token.user = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token


@cache
def _key_max_length() -> int:
    max_length = Token._meta.get_field("key").max_length
    assert max_length is not None  # a CharField(max_length=40)
    return max_length


@cache
def _token_columns() -> list[str]:
    return [f.attname for f in Token._meta.concrete_fields]


@cache
def _user_columns() -> list[str]:
    return [f.attname for f in get_user_model()._meta.concrete_fields]


@cache
def _token_query() -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    token_table, user_table = quote(Token._meta.db_table), quote(user_model._meta.db_table)
    columns = [f"t.{quote(f.column)}" for f in Token._meta.concrete_fields] + [
        f"u.{quote(f.column)}" for f in user_model._meta.concrete_fields
    ]
    user_fk = quote(Token._meta.get_field("user").column)
    user_pk = quote(user_model._meta.pk.column)
    token_key = quote(Token._meta.get_field("key").column)
    # Names from the models' metadata, the key a parameter.
    return (
        f"SELECT {', '.join(columns)} FROM {token_table} t"  # noqa: S608
        f" JOIN {user_table} u ON u.{user_pk} = t.{user_fk} WHERE t.{token_key} = %s"
    )
