"""Admin pages for users (their roles audited), teams, API keys, the audit trail and the
platform's processes."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import User
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import AbstractAPIKey, APIKey

from jobplatform import services
from jobplatform.auth import AuthenticatedHttpRequest, admin_actor
from jobplatform.liveness import silent_after
from jobplatform.models import ApiKey, AuditEvent, ProcessHeartbeat, Team

# The library's own key model is unused: jobplatform.ApiKey extends it with a user and scopes.
admin.site.unregister(APIKey)
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin[User]):
    """Django's user page; a change of groups (roles), permissions or flags is audited."""

    def save_model(
        self, request: HttpRequest, obj: User, form: ModelForm[User], change: bool
    ) -> None:
        # Read before the flags are saved here and the groups in save_related.
        if change:
            before = services.user_access(user=User.objects.get(pk=obj.pk))
            obj._access_before = before  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(
        self, request: HttpRequest, form: ModelForm[User], formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        before = getattr(form.instance, "_access_before", None)
        if before is not None:
            services.user_access_changed(
                user=form.instance, before=before, actor=admin_actor(request)
            )


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    """A team's members share their work (jobplatform.access); changes are audited."""

    list_display = ["name", "member_count", "created_at"]
    search_fields = ["name", "members__username"]
    filter_horizontal = ["members"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        teams: QuerySet[Team] = super().get_queryset(request)
        return teams.annotate(member_total=Count("members"))

    @admin.display(description="members", ordering="member_total")
    def member_count(self, team: Team) -> int:
        total: int = team.member_total  # type: ignore[attr-defined]
        return total

    def save_model(
        self, request: HttpRequest, obj: Team, form: ModelForm[Team], change: bool
    ) -> None:
        obj._members_before = (  # type: ignore[attr-defined]
            set(obj.members.values_list("id", flat=True)) if change else set()
        )
        super().save_model(request, obj, form, change)

    def save_related(
        self, request: HttpRequest, form: ModelForm[Team], formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        team = form.instance
        services.team_members_changed(
            team=team, before=getattr(team, "_members_before", set()), actor=admin_actor(request)
        )


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    """Create a key for any user (shown once, in the message after saving) or revoke keys with
    the action: both through the services, both audited. Nothing else about a key changes."""

    model = ApiKey
    list_display = ("prefix", "name", "user", "scopes", "created", "expiry_date", "_has_expired",
                    "last_used_at", "revoked")  # type: ignore[assignment]  # fmt: skip
    list_filter = ("revoked", "created")  # type: ignore[assignment]
    search_fields = ("name", "prefix", "user__username")  # type: ignore[assignment]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("prefix", "revoked")
        return tuple(f.name for f in ApiKey._meta.fields if f.name not in ("hashed_key", "id"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        if obj is None:
            return ["user", "name", "scopes", "expiry_date"]
        return list(self.get_readonly_fields(request, obj))

    def save_model(
        self,
        request: HttpRequest,
        obj: AbstractAPIKey,
        form: Any = None,
        change: bool = False,
    ) -> None:
        if change:
            return  # every field is read-only once the key exists
        assert isinstance(obj, ApiKey)
        new = services.api_key_create(
            user=obj.user,
            name=obj.name,
            scopes=obj.scopes or [ApiKey.Scope.READ, ApiKey.Scope.WRITE],
            expires_at=obj.expiry_date,
            actor=admin_actor(request),
        )
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(new.api_key, field.attname))
        obj._state.adding = False
        messages.warning(
            request,
            f"The API key for {obj.user} is: {new.key} — store it now: it is not shown again.",
        )

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke_keys(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(
            services.api_key_revoke(prefix=prefix, actor=request.user)
            for prefix in queryset.values_list("prefix", flat=True)
        )
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the trail is written by the services that act, and never edited."""

    list_display = ["created_at", "action", "actor_name", "subject"]
    list_filter = ["action", "created_at"]
    search_fields = ["subject", "actor_name"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at", "action", "actor", "actor_name", "subject", "details"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ProcessHeartbeat)
class ProcessHeartbeatAdmin(admin.ModelAdmin[ProcessHeartbeat]):
    """The platform's processes and their last sign of life; written by the processes only."""

    list_display = ["role", "name", "alive", "seconds_since_beat", "beat_at", "started_at", "pid"]
    list_filter = ["role", "hostname"]
    search_fields = ["name", "hostname"]
    readonly_fields = [f.name for f in ProcessHeartbeat._meta.fields]

    @admin.display(boolean=True, description="alive")
    def alive(self, process: ProcessHeartbeat) -> bool:
        return timezone.now() - process.beat_at <= silent_after()

    @admin.display(description="seconds since last beat")
    def seconds_since_beat(self, process: ProcessHeartbeat) -> int:
        return int((timezone.now() - process.beat_at).total_seconds())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
