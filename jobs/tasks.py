"""The jobs app's Celery tasks, found by Celery's autodiscovery (which imports ``<app>.tasks``).

Running a job is ``executions.run_job``; the schedules' wake-up lives with the schedules.
"""

from __future__ import annotations

from jobs.schedules.tasks import fire_schedule

__all__ = ["fire_schedule"]
