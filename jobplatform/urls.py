from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from console.views import workers

urlpatterns = [
    # A browser that opens the server lands on the API's interactive documentation.
    path("", RedirectView.as_view(pattern_name="api-docs", permanent=False)),
    # Before the admin's own URLs, whose catch-all would answer it with a 404.
    path("admin/workers/", admin.site.admin_view(workers), name="console-workers"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # /healthz, /readyz and /metrics are answered by jobplatform.health.ProbeMiddleware.
    path("api/v1/", include("jobplatform.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("api/v1/", include("jobs.schedules.api.urls")),
    path("api/v1/", include("deadletter.api.urls")),
]

handler400 = "jobplatform.api.exceptions.bad_request"
handler404 = "jobplatform.api.exceptions.not_found"
handler500 = "jobplatform.api.exceptions.server_error"
