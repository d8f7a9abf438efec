from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        # Built-in steps and the operator's own step modules register themselves on import.
        from jobs.steps import registry

        registry.load_step_modules()
