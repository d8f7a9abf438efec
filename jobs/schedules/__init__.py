"""Schedules (DESIGN §6, docs/schedules.md): a cron expression in a timezone and a job template.

``models`` (Schedule, ScheduleFiring), ``cron`` (fire times, daylight saving included),
``services`` (create, edit, pause, resume, delete, with their beat rows), ``firing`` (due ticks
become jobs), ``selectors``, ``api/``, ``admin`` and ``tasks`` (beat's wake-up).
"""
