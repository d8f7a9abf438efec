from __future__ import annotations

from django.urls import path

from jobs.api import views

urlpatterns = [
    path("jobs/", views.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/bulk/", views.JobBulkCreateApi.as_view(), name="job-bulk"),
    path("jobs/<uuid:job_id>/", views.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", views.JobCancelApi.as_view(), name="job-cancel"),
    path("steps/", views.StepTypeListApi.as_view(), name="step-list"),
]
