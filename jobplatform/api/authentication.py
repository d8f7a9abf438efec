"""API authentication: DRF tokens, API keys and JWTs, each looked up with one prepared statement.

Every scheme answers as its library would (DRF's ``TokenAuthentication``,
djangorestframework-api-key's key format and hashing, simplejwt's ``JWTAuthentication``), but
the credential, its user, the user's permissions and their teammates come back in one row of
one prepared statement: DRF's ORM lookup took a third of a job submission's CPU, and
``user.has_perm`` and the visibility of teams' work would add three queries more
(docs/performance.md). The permissions prime Django's ``ModelBackend`` cache, so ``has_perm``
answers with no query, exactly as the backend would.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Field, Model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt import authentication as jwt_authentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token as JwtToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from jobplatform import services
from jobplatform.access import prime_visible_owners
from jobplatform.db import prepared_cursor
from jobplatform.models import ApiKey, Team


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, answered exactly as DRF's class answers it."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        found = None
        if len(key) <= _key_max_length() and "\x00" not in key:
            found = _lookup(Token, "key", key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token, user = found
        token.user = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <prefix>.<secret>``: the key's user, with the key as
    ``request.auth`` (its scopes are checked by ``jobplatform.api.permissions.ApiKeyScope``)."""

    keyword = KeyParser.keyword
    key_parser = KeyParser()
    max_length = 100  # a key is 8 + 1 + 32 characters

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = self.key_parser.get(request)
        if key is None:
            return None
        return self.authenticate_credentials(key.strip())

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiKey]:
        prefix, dot, secret = key.partition(".")
        found = None
        if dot and secret and len(key) <= self.max_length and "\x00" not in key:
            found = _lookup(ApiKey, "prefix", prefix)
        # The prefix finds the row; the SHA-512 of the whole key must match its hash.
        if found is None or not found[0].is_valid(key):
            raise exceptions.AuthenticationFailed(_("Invalid API key."))
        api_key, user = found
        if api_key.revoked:
            raise exceptions.AuthenticationFailed(_("This API key was revoked."))
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed(_("This API key has expired."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        api_key.user = user
        services.api_key_touch(api_key=api_key)
        return user, api_key


class JWTAuthentication(jwt_authentication.JWTAuthentication):
    """``Authorization: Bearer <access token>`` (simplejwt), the user read with its permissions
    in one prepared statement. The ``roles`` claim is for clients: permissions come from the
    database, so a role taken away applies at the next request, not at the token's expiry."""

    def get_user(self, validated_token: JwtToken) -> Any:
        try:
            user_id = int(validated_token[jwt_settings.USER_ID_CLAIM])
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("Token contained no recognizable user identification") from None
        user = user_with_permissions(user_id=user_id)
        if user is None:
            raise exceptions.AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        claim = validated_token.get(jwt_settings.REVOKE_TOKEN_CLAIM)
        if jwt_settings.CHECK_REVOKE_TOKEN and claim != get_md5_hash_password(user.password):
            raise exceptions.AuthenticationFailed(
                _("The user's password has been changed."), code="password_changed"
            )
        return user


def user_with_permissions(*, user_id: int) -> Any | None:
    """The user, with its permissions loaded, in one prepared statement; None if no such user."""
    user_model = get_user_model()
    with prepared_cursor() as cursor:
        row = cursor.execute(_user_query(), [user_id], prepare=True).fetchone()
    if row is None:
        return None
    columns = _columns(user_model)
    user = user_model.from_db(connection.alias, columns, row[: len(columns)])
    _prime(user, row)
    return user


def _lookup(model: type[Model], field: str, value: str) -> tuple[Any, Any] | None:
    """The credential of ``model`` whose ``field`` is ``value``, and its user with permissions."""
    with prepared_cursor() as cursor:
        row = cursor.execute(_credential_query(model, field), [value], prepare=True).fetchone()
    if row is None:
        return None
    credential_columns, user_columns = _columns(model), _columns(get_user_model())
    split = len(credential_columns)
    credential = model.from_db(connection.alias, credential_columns, row[:split])
    user = get_user_model().from_db(
        connection.alias, user_columns, row[split : split + len(user_columns)]
    )
    _prime(user, row)
    return credential, user


def _prime(user: AbstractBaseUser, row: tuple[Any, ...]) -> None:
    """Keep the row's last two columns on the user: its permissions and teammates."""
    # ModelBackend.get_all_permissions() keeps "app_label.codename" strings in _perm_cache and
    # returns them without a query while the attribute is there: the set it would compute.
    user._perm_cache = set(row[-2])  # type: ignore[attr-defined]
    prime_visible_owners(user, row[-1])


@cache
def _key_max_length() -> int:
    max_length = Token._meta.get_field("key").max_length
    assert max_length is not None  # a CharField(max_length=40)
    return max_length


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)  # a concrete field, not a relation's reverse side
    return field.column


@cache
def _columns(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _select_list(model: type[Model], alias: str) -> list[str]:
    quote = connection.ops.quote_name
    return [f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields]


@cache
def _permissions_sql() -> str:
    """An array of the user ``u``'s permissions, its own and its groups', as app.codename."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    user_perms = user_model._meta.get_field("user_permissions")
    user_groups = user_model._meta.get_field("groups")
    group_perms = Group._meta.get_field("permissions")
    user_pk = quote(user_model._meta.pk.column)
    group_fk = quote(group_perms.m2m_column_name())
    return (
        "ARRAY(SELECT ct.app_label || '.' || p.codename"  # noqa: S608 - names from _meta
        f" FROM {quote(Permission._meta.db_table)} p"
        f" JOIN {quote(ContentType._meta.db_table)} ct ON ct.id = p.content_type_id"
        f" WHERE p.id IN ("
        f"SELECT up.{quote(user_perms.m2m_reverse_name())}"
        f" FROM {quote(user_perms.m2m_db_table())} up"
        f" WHERE up.{quote(user_perms.m2m_column_name())} = u.{user_pk}"
        " UNION ALL"
        f" SELECT gp.{quote(group_perms.m2m_reverse_name())}"
        f" FROM {quote(user_groups.m2m_db_table())} ug"
        f" JOIN {quote(group_perms.m2m_db_table())} gp"
        f" ON gp.{group_fk} = ug.{quote(user_groups.m2m_reverse_name())}"
        f" WHERE ug.{quote(user_groups.m2m_column_name())} = u.{user_pk}))"
    )


@cache
def _teammates_sql() -> str:
    """An array of the ids of the users who share a team with the user ``u``."""
    quote = connection.ops.quote_name
    members = Team._meta.get_field("members")
    table, team, member = (
        quote(members.m2m_db_table()),
        quote(members.m2m_column_name()),
        quote(members.m2m_reverse_name()),
    )
    user_pk = quote(get_user_model()._meta.pk.column)
    return (
        f"ARRAY(SELECT DISTINCT mate.{member} FROM {table} mine"  # noqa: S608 - names from _meta
        f" JOIN {table} mate ON mate.{team} = mine.{team}"
        f" WHERE mine.{member} = u.{user_pk} AND mate.{member} <> u.{user_pk})"
    )


@cache
def _credential_query(model: type[Model], field: str) -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    columns = [
        *_select_list(model, "c"),
        *_select_list(user_model, "u"),
        _permissions_sql(),
        _teammates_sql(),
    ]
    user_fk = quote(_column(model, "user"))
    user_pk = quote(user_model._meta.pk.column)
    # Names from the models' metadata, the value a parameter.
    return (
        f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} c"  # noqa: S608
        f" JOIN {quote(user_model._meta.db_table)} u ON u.{user_pk} = c.{user_fk}"
        f" WHERE c.{quote(_column(model, field))} = %s"
    )


@cache
def _user_query() -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    columns = [*_select_list(user_model, "u"), _permissions_sql(), _teammates_sql()]
    return (
        f"SELECT {', '.join(columns)} FROM {quote(user_model._meta.db_table)} u"  # noqa: S608
        f" WHERE u.{quote(user_model._meta.pk.column)} = %s"
    )
