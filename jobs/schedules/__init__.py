"""Schedules (DESIGN §6, docs/schedules.md): a cron expression in a timezone and a job template.

``models`` (Schedule, ScheduleFiring), ``cron`` (fire times, daylight saving included),
``services`` (create, edit, pause, resume, delete), ``firing`` (the sweep that makes due ticks
jobs, run by the dispatchers, and the manual trigger), ``selectors``, ``api/`` and ``admin``.
"""
