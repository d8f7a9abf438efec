from __future__ import annotations

from django.apps import AppConfig


class JobplatformConfig(AppConfig):
    name = "jobplatform"
    verbose_name = "Job platform"
