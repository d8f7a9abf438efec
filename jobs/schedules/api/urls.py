from __future__ import annotations

from django.urls import path

from jobs.schedules.api import views

urlpatterns = [
    path("schedules/", views.ScheduleListCreateApi.as_view(), name="schedule-list"),
    path(
        "schedules/<uuid:schedule_id>/", views.ScheduleDetailApi.as_view(), name="schedule-detail"
    ),
    path(
        "schedules/<uuid:schedule_id>/pause/",
        views.SchedulePauseApi.as_view(),
        name="schedule-pause",
    ),
    path(
        "schedules/<uuid:schedule_id>/resume/",
        views.ScheduleResumeApi.as_view(),
        name="schedule-resume",
    ),
    path(
        "schedules/<uuid:schedule_id>/trigger/",
        views.ScheduleTriggerApi.as_view(),
        name="schedule-trigger",
    ),
]
