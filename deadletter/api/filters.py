from __future__ import annotations

import django_filters

from deadletter.models import DeadLetter


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """``?reason=permanent,exhausted``"""


class DeadLetterFilter(django_filters.FilterSet):
    """The list's query parameters; bulk actions accept the same names in their ``filter``."""

    reason = ChoiceInFilter(choices=DeadLetter.Reason.choices)
    state = ChoiceInFilter(choices=DeadLetter.State.choices)
    queue = django_filters.CharFilter(field_name="job__queue")
    error_type = django_filters.CharFilter()
    error_code = django_filters.CharFilter()
    step_type = django_filters.CharFilter()
    owner = django_filters.CharFilter(field_name="job__owner__username")
    job = django_filters.UUIDFilter(field_name="job_id")
    fingerprint = django_filters.CharFilter()
    message_contains = django_filters.CharFilter(
        field_name="error_message", lookup_expr="icontains"
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = DeadLetter
        fields: list[str] = []
