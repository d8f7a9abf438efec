from __future__ import annotations

from uuid import UUID

from celery import shared_task

from jobs.schedules.firing import schedule_fire
from jobs.schedules.services import FIRE_SCHEDULE_TASK


@shared_task(name=FIRE_SCHEDULE_TASK, acks_late=True, ignore_result=True)
def fire_schedule(schedule_id: str) -> None:
    """Beat, every minute for each schedule: fire the ticks that are due (usually none).

    Not retried: a firing that fails (the database is down) leaves next_fire_at where it was, so
    beat's next wake-up finds the tick still due, and the misfire policy decides if it is late.
    """
    schedule_fire(schedule_id=UUID(schedule_id))
