from __future__ import annotations

import django_filters
from django.db.models import QuerySet

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
    trace_id = django_filters.CharFilter()
    step_type = django_filters.CharFilter(
        method="filter_step_type", label="has a step of this type"
    )
    owner = django_filters.CharFilter(
        field_name="owner__username", label="the owner's username (among the jobs you may see)"
    )

    def filter_step_type(self, jobs: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        # jsonb containment: a step {"type": value} among the job's steps.
        return jobs.filter(steps__contains=[{"type": value}])

    # From Flower (a task id) to the job: the attempts its task ran (Task.retry keeps the id).
    delivery_id = django_filters.CharFilter(method="filter_delivery_id")

    class Meta:
        model = Job
        fields: list[str] = []

    def filter_delivery_id(self, jobs: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        # Executions are the top layer's to read (the API composes apps): by their relation name,
        # without importing them. An id names one job; `distinct` if its retries share the id.
        return jobs.filter(executions__delivery_id=value).distinct()
