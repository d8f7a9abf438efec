from __future__ import annotations

from django.apps import AppConfig


class DeadLetterConfig(AppConfig):
    name = "deadletter"
    verbose_name = "Dead letters"
