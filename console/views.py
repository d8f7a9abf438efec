from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from executions.selectors import RECENT_ATTEMPTS, worker_list


def workers(request: HttpRequest) -> HttpResponse:
    """The workers page of the admin (behind admin.site.admin_view: staff only)."""
    context = {
        **admin.site.each_context(request),
        "title": "Workers",
        "workers": worker_list(),
        "recent": RECENT_ATTEMPTS,
        "now": timezone.now(),
    }
    return TemplateResponse(request, "console/workers.html", context)
