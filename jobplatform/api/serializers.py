"""Shapes of the platform's own endpoints: API keys and JWTs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from jobplatform.models import ApiKey
from jobplatform.roles import Role


class StrictInput(serializers.Serializer[None]):
    """Refuses unknown fields by name, so a typo ("max_retry") is not silently ignored. Input
    only: it never serializes an instance."""

    closed = True  # the OpenAPI document says so: additionalProperties false

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(self.initial_data, dict):
            raise serializers.ValidationError("the body must be a JSON object")
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({field: "unknown field" for field in unknown})
        return attrs


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyInput(StrictInput):
    """Shapes only; the values are checked by ``api_key_create`` (KEYS.* codes)."""

    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=20), required=False, max_length=10
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    user = serializers.CharField(required=False, max_length=150)  # an admin's, for another user


def api_key_output(api_key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": api_key.prefix,
        "name": api_key.name,
        "user": api_key.user.get_username(),
        "scopes": list(api_key.scopes),
        "created_at": api_key.created,
        "expires_at": api_key.expiry_date,
        "last_used_at": api_key.last_used_at,
        "revoked": api_key.revoked,
        "revoked_at": api_key.revoked_at,
    }


# --- JWT ---------------------------------------------------------------------------------------


def roles_of(user: Any) -> list[str]:
    """The user's roles (its groups named after one), for the ``roles`` claim."""
    roles = {role.value for role in Role}
    return sorted(name for name in user.groups.values_list("name", flat=True) if name in roles)


class TokenObtainSerializer(jwt_serializers.TokenObtainPairSerializer):
    """simplejwt's username + password login, with the user's roles in both tokens."""

    @classmethod
    def get_token(cls, user: Any) -> Any:
        token = super().get_token(user)
        token["roles"] = roles_of(user)
        return token


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """A new access token from a refresh token, with the roles the user has now.

    simplejwt's own refresh copies the claims of the refresh token (roles as at login), does not
    check that the password is unchanged (CHECK_REVOKE_TOKEN) and fails with a 500 for a user
    deleted since: this one answers 401 AUTH.INVALID_CREDENTIALS to both.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = RefreshToken(attrs["refresh"])  # TokenError: the view answers 401
        user = (
            get_user_model()
            .objects.filter(**{jwt_settings.USER_ID_FIELD: refresh.get(jwt_settings.USER_ID_CLAIM)})
            .first()
        )
        if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
            raise exceptions.AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            )
        claim = refresh.get(jwt_settings.REVOKE_TOKEN_CLAIM)
        if jwt_settings.CHECK_REVOKE_TOKEN and claim != get_md5_hash_password(user.password):
            raise exceptions.AuthenticationFailed(
                "The user's password has been changed.", "password_changed"
            )
        access = refresh.access_token
        access["roles"] = roles_of(user)
        return {"access": str(access)}
