from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # /healthz, /readyz and /metrics are answered by jobplatform.health.ProbeMiddleware.
    path("api/v1/", include("jobplatform.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("api/v1/", include("jobs.schedules.api.urls")),
    path("api/v1/", include("deadletter.api.urls")),
]

handler400 = "jobplatform.api.exceptions.bad_request"
handler404 = "jobplatform.api.exceptions.not_found"
handler500 = "jobplatform.api.exceptions.server_error"
