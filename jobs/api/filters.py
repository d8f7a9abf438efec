from __future__ import annotations

import django_filters

from jobs.models import Job


class StatusInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """``?status=queued,running``"""


class JobFilter(django_filters.FilterSet):
    status = StatusInFilter(choices=Job.Status.choices)
    queue = django_filters.CharFilter()
    name = django_filters.CharFilter()
    name_contains = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    schedule = django_filters.UUIDFilter(field_name="schedule_id")

    class Meta:
        model = Job
        fields: list[str] = []
