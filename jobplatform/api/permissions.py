"""Who may call what: the role's permission for the method, and the API key's scope.

Every API view declares ``required_permissions``, a map from HTTP method to the permission it
needs (``"jobs.add_job"``) or None (any authenticated user). A method the map does not name is
refused: a view that forgets to declare one is closed, not open. Which objects a caller may act
on is the selectors' business (jobplatform.access): a permitted action on an object the caller
cannot see is a 404.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from jobplatform.errors import Forbidden
from jobplatform.models import ApiKey


def _method(request: Request) -> str:
    return "GET" if request.method == "HEAD" else str(request.method)


class HasRolePermission(permissions.BasePermission):
    """The caller's roles grant the permission the view names for this method."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # IsAuthenticated answers 401 first
        method = _method(request)
        if method == "OPTIONS" or not hasattr(view, method.lower()):
            return True  # OPTIONS describes the view; a method it lacks is DRF's 405
        required: dict[str, str | None] = getattr(view, "required_permissions", {})
        if method not in required:
            raise Forbidden(
                "AUTH.PERMISSION_DENIED", f"{method} is not allowed here", {"method": method}
            )
        permission = required[method]
        if permission is not None and not request.user.has_perm(permission):
            raise Forbidden(
                "AUTH.PERMISSION_DENIED",
                f"your role does not allow this: it needs the permission {permission}",
                {"permission": permission},
            )
        return True


class ApiKeyScope(permissions.BasePermission):
    """A request made with an API key needs the key's ``read`` scope to read (GET, HEAD,
    OPTIONS) and its ``write`` scope for anything else."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        safe = request.method in permissions.SAFE_METHODS
        needed = ApiKey.Scope.READ if safe else ApiKey.Scope.WRITE
        if needed not in key.scopes:
            raise Forbidden(
                "AUTH.INSUFFICIENT_SCOPE",
                f"this API key has the scopes {key.scopes}; {request.method} needs {needed}",
                {"required": str(needed), "scopes": list(key.scopes)},
            )
        return True
