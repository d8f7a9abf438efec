"""The admin pages of rate limits and circuit breakers (imported by jobs.admin)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobplatform.auth import admin_actor
from jobs.models import CircuitBreaker, RateLimit
from jobs.selectors import breaker_list, rate_limit_list
from jobs.services import dependencies


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin[RateLimit]):
    """Named token buckets: a job's ``rate_limit``, or an http host's name."""

    list_display = ["name", "rate", "burst", "tokens_now", "held_jobs", "updated_at"]
    search_fields = ["name"]
    fields = ["name", "rate", "burst", "tokens_now", "held_jobs", "updated_at"]
    readonly_fields = ["tokens_now", "held_jobs", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: RateLimit | None = None) -> list[str]:
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    @admin.display(description="tokens now")
    def tokens_now(self, limit: RateLimit) -> str:
        views = rate_limit_list(names=[limit.name])
        return "?" if not views or views[0].tokens is None else str(views[0].tokens)

    @admin.display(description="jobs held")
    def held_jobs(self, limit: RateLimit) -> int:
        views = rate_limit_list(names=[limit.name])
        return views[0].held if views else 0

    def save_model(
        self, request: HttpRequest, obj: RateLimit, form: forms.ModelForm[RateLimit], change: bool
    ) -> None:
        dependencies.rate_limit_set(
            name=obj.name, rate=obj.rate, burst=obj.burst, actor=admin_actor(request)
        )

    def delete_model(self, request: HttpRequest, obj: RateLimit) -> None:
        dependencies.rate_limit_delete(name=obj.name, actor=admin_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RateLimit]) -> None:
        for name in queryset.values_list("name", flat=True):
            dependencies.rate_limit_delete(name=name, actor=admin_actor(request))


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin[CircuitBreaker]):
    """The http hosts' breakers: their state, and the actions to open or close one by hand."""

    list_display = ["host", "state", "manual", "failures", "opened_at", "retry_at", "held_jobs"]
    list_filter = ["state", "manual"]
    search_fields = ["host"]
    actions = ["open_breakers", "close_breakers"]
    readonly_fields = [
        "host",
        "state",
        "failures",
        "window_started_at",
        "opened_at",
        "retry_at",
        "manual",
        "probe_job",
        "probe_at",
        "held_jobs",
        "updated_at",
    ]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a host's first transient failure makes its row

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # only through the actions, which apply the breaker's rules

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.operate_circuitbreaker")

    @admin.display(description="jobs held")
    def held_jobs(self, breaker: CircuitBreaker) -> int:
        return breaker_list(hosts=[breaker.host])[0].held

    @admin.action(
        description="Open the selected breakers (their jobs wait)", permissions=["operate"]
    )
    def open_breakers(self, request: HttpRequest, queryset: QuerySet[CircuitBreaker]) -> None:
        hosts = list(queryset.values_list("host", flat=True))
        for host in hosts:
            dependencies.breaker_open(host=host, actor=admin_actor(request))
        self.message_user(request, f"Opened {len(hosts)} breaker(s).", messages.SUCCESS)

    @admin.action(
        description="Close the selected breakers (their jobs go)", permissions=["operate"]
    )
    def close_breakers(self, request: HttpRequest, queryset: QuerySet[CircuitBreaker]) -> None:
        hosts = list(queryset.values_list("host", flat=True))
        for host in hosts:
            dependencies.breaker_close(host=host, actor=admin_actor(request))
        self.message_user(request, f"Closed {len(hosts)} breaker(s).", messages.SUCCESS)
