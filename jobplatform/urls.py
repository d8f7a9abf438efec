from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from console.views import workers

urlpatterns = [
    # Before the admin's own URLs, whose catch-all would answer it with a 404.
    path("admin/workers/", admin.site.admin_view(workers), name="console-workers"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobplatform.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("api/v1/", include("jobs.schedules.api.urls")),
    path("api/v1/", include("deadletter.api.urls")),
]

handler400 = "jobplatform.api.exceptions.bad_request"
handler404 = "jobplatform.api.exceptions.not_found"
handler500 = "jobplatform.api.exceptions.server_error"
