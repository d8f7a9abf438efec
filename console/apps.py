from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The admin as an operator's console: the summary of every queue on the admin index and the
    job list, the workers page, and beat's rows owned by the platform shown read-only.

    The top layer (docs/architecture.md): it reads through every app's selectors and writes
    nothing of its own.
    """

    name = "console"
    verbose_name = "Operations"
