from __future__ import annotations

from django.urls import path

from jobs.api import dependencies, views

urlpatterns = [
    path("jobs/", views.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/bulk/", views.JobBulkCreateApi.as_view(), name="job-bulk"),
    path("jobs/stats/", views.JobStatsApi.as_view(), name="job-stats"),
    path("jobs/<uuid:job_id>/", views.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", views.JobCancelApi.as_view(), name="job-cancel"),
    path(
        "jobs/<uuid:job_id>/executions/",
        views.JobExecutionListApi.as_view(),
        name="job-executions",
    ),
    path(
        "jobs/<uuid:job_id>/callbacks/",
        views.JobCallbackListApi.as_view(),
        name="job-callbacks",
    ),
    path("callbacks/key/", views.CallbackKeyApi.as_view(), name="callback-key"),
    path("steps/", views.StepTypeListApi.as_view(), name="step-list"),
    path("queues/", views.QueueListApi.as_view(), name="queue-list"),
    path("queues/<str:name>/", views.QueueDetailApi.as_view(), name="queue-detail"),
    path("queues/<str:name>/pause/", views.QueuePauseApi.as_view(), name="queue-pause"),
    path("queues/<str:name>/resume/", views.QueueResumeApi.as_view(), name="queue-resume"),
    path("limits/", views.LimitsApi.as_view(), name="limits"),
    path("rate-limits/", dependencies.RateLimitListApi.as_view(), name="rate-limit-list"),
    path(
        "rate-limits/<str:name>/",
        dependencies.RateLimitDetailApi.as_view(),
        name="rate-limit-detail",
    ),
    path("breakers/", dependencies.BreakerListApi.as_view(), name="breaker-list"),
    path("breakers/<str:host>/", dependencies.BreakerDetailApi.as_view(), name="breaker-detail"),
    path("breakers/<str:host>/open/", dependencies.BreakerOpenApi.as_view(), name="breaker-open"),
    path(
        "breakers/<str:host>/close/", dependencies.BreakerCloseApi.as_view(), name="breaker-close"
    ),
]
