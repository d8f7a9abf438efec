from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from console.summary import WORKER_SILENT_AFTER, operator_summary
from jobplatform.access import sees_all_owners

register = template.Library()


@register.inclusion_tag("console/summary.html", takes_context=True)
def summary(context: dict[str, Any]) -> dict[str, Any]:
    """The operator's summary, for the admin index and the job list. It counts every owner's
    work, so only a role that sees every owner's (the admin) is shown it."""
    if not sees_all_owners(context["request"].user):
        return {"summary": None}
    return {"summary": operator_summary()}


@register.filter
def age(value: timedelta | None) -> str:
    """A duration as an operator reads it: 4s, 3m 12s, 2h 05m, 3d 4h."""
    if value is None:
        return "-"
    seconds = max(0, int(value.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


@register.filter
def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


@register.filter
def silent(last_seen: Any, now: Any) -> bool:
    return bool(now - last_seen > WORKER_SILENT_AFTER)
