"""The one way a job row is written: its values from a spec, and the statements that store it.

Three paths insert jobs. A submission and a bulk submission build their rows with
:func:`job_values` and store them with :func:`job_insert`; a schedule sweep stores thousands of
ticks in one statement (:func:`tick_jobs_insert`), which computes the same columns in SQL from each
schedule's job template (``tests/jobs/test_job_rows.py`` checks that both give the same row).
Each NOTIFYs the dispatchers in the same commit. Columns come from the model; values are always
parameters.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Field, JSONField
from django.utils import timezone

from jobplatform import metrics
from jobplatform.db import prepared_cursor
from jobs.lifecycle import sql
from jobs.models import Job
from jobs.services.common import DISPATCH_CHANNEL, notify_dispatchers
from jobs.services.spec import JobSpec
from jobs.steps.http import steps_hosts

JOB_FIELDS: list[Field[Any, Any]] = list(Job._meta.concrete_fields)
_JSON_FIELDS = {f.attname for f in JOB_FIELDS if isinstance(f, JSONField)}
_COLUMNS = ", ".join(connection.ops.quote_name(f.column) for f in JOB_FIELDS)


def job_values(
    *,
    owner_id: Any,
    spec: JobSpec,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    now: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Every column of a new PENDING job from a submission; the model's defaults for the rest.

    ``extra`` sets further columns (a schedule's tick: ``schedule_id``, ``scheduled_for``).
    """
    now = now or timezone.now()
    values = {
        "id": uuid.uuid4(),
        "owner_id": owner_id,
        "name": spec.name,
        "steps": job_steps(spec.steps),
        "input": spec.input,
        "queue": spec.queue,
        "priority": spec.priority,
        "max_retries": spec.max_retries,
        "retry_backoff": spec.retry_backoff,
        "retry_backoff_max": spec.retry_backoff_max,
        "retry_jitter": spec.retry_jitter,
        "timeout": spec.timeout,
        "run_at": spec.run_at or now,
        "concurrency_key": spec.concurrency_key,
        "max_concurrency": spec.max_concurrency,
        "rate_limit": spec.rate_limit,
        "callback_url": spec.callback_url,
        "hosts": steps_hosts(spec.steps),
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
        "created_at": now,
        "updated_at": now,
        **extra,
    }
    for field in JOB_FIELDS:
        if field.attname not in values:
            values[field.attname] = field.get_default()
    return values


def job_steps(steps: list[Any]) -> list[dict[str, Any]]:
    """Steps as a job stores them: type, params (default {}), and timeout when set. A schedule
    stores its template's steps so too, and its jobs copy them as they are."""
    return [{"type": s["type"], "params": s.get("params", {})} | _step_extras(s) for s in steps]


def _step_extras(step: dict[str, Any]) -> dict[str, Any]:
    return {"timeout": step["timeout"]} if step.get("timeout") is not None else {}


def _cells(values: Mapping[str, Any]) -> list[Any]:
    return [
        json.dumps(values[f.attname])
        if f.attname in _JSON_FIELDS and values[f.attname] is not None
        else values[f.attname]
        for f in JOB_FIELDS
    ]


# One statement, so that in autocommit the row and the dispatchers' wake-up commit together
# without BEGIN and COMMIT round trips; prepared, so that it is planned once per connection.
# Through Model.save() a submission spent more CPU compiling its INSERT than PostgreSQL spent
# running it (docs/performance.md).
_INSERT_ONE = (
    "WITH new AS (INSERT INTO jobs_job ({columns}) VALUES ({values}) RETURNING id) "
    "SELECT id, pg_notify(%s, '') FROM new"
).format(
    columns=_COLUMNS,
    values=", ".join("%s::jsonb" if f.attname in _JSON_FIELDS else "%s" for f in JOB_FIELDS),
)


def job_insert(rows: Sequence[Mapping[str, Any]]) -> list[UUID]:
    """Store jobs made by :func:`job_values`; return the ids stored. The dispatchers are woken
    in the same commit (at once in autocommit, else when the caller's transaction commits).

    One row is one prepared INSERT; several are one COPY, whose cost per row is a fraction of
    an INSERT's (docs/performance.md).
    """
    if len(rows) == 1:
        with prepared_cursor() as cursor:
            cursor.execute(_INSERT_ONE, [*_cells(rows[0]), DISPATCH_CHANNEL], prepare=True)
            ids = [row[0] for row in cursor.fetchall()]
        metrics.JOBS_SUBMITTED.labels(rows[0]["queue"]).inc(len(ids))
        return ids
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY jobs_job ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(_cells(row))
    notify_dispatchers()
    for queue, count in Counter(row["queue"] for row in rows).items():
        metrics.JOBS_SUBMITTED.labels(queue).inc(count)
    return [row["id"] for row in rows]


# --- the jobs of schedule ticks, set-based ------------------------------------------------------

# A schedule's job_template is a JobSpec as JSON, without run_at and with its steps as job_steps
# gives them; a key it lacks takes JobSpec's default, as JobSpec(**template) would.
_SPEC_DEFAULTS = {
    f.name: (f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
    for f in fields(JobSpec)
    if f.name not in ("name", "steps", "run_at")
}


def _cast(field: Field[Any, Any], expression: str) -> str:
    """``expression`` as the column's type. Text is left to the assignment cast, which refuses
    a value too long for the column where an explicit cast to varchar(n) would cut it short."""
    if field.attname in _JSON_FIELDS:
        return f"CAST({expression} AS jsonb)"
    if field.get_internal_type() in ("CharField", "TextField"):
        return expression
    return f"CAST({expression} AS {field.db_type(connection)})"


def _tick_columns() -> tuple[str, dict[str, Any]]:
    """The SELECT list of job_insert_ticks, one expression per column, and its constants: what
    job_values gives the template's JobSpec, from ``s`` (the schedule) and ``v`` (the tick)."""
    per_row = {
        "id": "coalesce(v.id, gen_random_uuid())",
        "owner_id": "s.owner_id",
        "name": "s.job_template->>'name'",
        "steps": "s.job_template->'steps'",
        "run_at": "v.run_at",
        "schedule_id": "v.schedule_id",
        "scheduled_for": "v.scheduled_for",
        "created_at": "%(now)s",
        "updated_at": "%(now)s",
        "status": sql(Job.Status.PENDING),
        "trace_id": "replace(gen_random_uuid()::text, '-', '')",  # new_trace_id(): a uuid4's hex
        "idempotency_key": "NULL",
        "request_fingerprint": "''",
        "hosts": "s.job_hosts",
    }
    constants: dict[str, Any] = {}
    expressions = []
    for field in JOB_FIELDS:
        key = field.attname
        if key in per_row:
            expressions.append(per_row[key])
        elif key in _SPEC_DEFAULTS:  # from the template
            default = _SPEC_DEFAULTS[key]
            if key in _JSON_FIELDS:
                constants[key] = json.dumps(default)
                expressions.append(f"coalesce(s.job_template->'{key}', %({key})s::jsonb)")
            else:
                # None is NULL (no concurrency key), not the text 'None'.
                constants[key] = None if default is None else str(default)
                expressions.append(_cast(field, f"coalesce(s.job_template->>'{key}', %({key})s)"))
        else:  # the model's default, the same for every row (job_values takes it too)
            default = field.get_default()
            is_json = key in _JSON_FIELDS and default is not None  # None is NULL, as in _cells
            constants[key] = json.dumps(default) if is_json else default
            expressions.append(_cast(field, f"%({key})s"))
    return ", ".join(expressions), constants


_TICK_SELECT, _TICK_CONSTANTS = _tick_columns()
_INSERT_TICKS = f"""
WITH v AS (
    SELECT * FROM unnest(
        %(ids)b::uuid[], %(schedules)b::uuid[], %(ticks)b::timestamptz[], %(run_at)b::timestamptz[]
    ) WITH ORDINALITY AS v(id, schedule_id, scheduled_for, run_at, position)
)
INSERT INTO jobs_job ({_COLUMNS})
SELECT {_TICK_SELECT}
FROM v JOIN jobs_schedule AS s ON s.id = v.schedule_id
-- The batch's schedules by primary key: without it the join hashed the whole table, for every
-- batch (a third of the statement's time at 10,000 schedules, and growing with the table).
WHERE s.id = ANY(%(schedules)b::uuid[])
ORDER BY v.position
-- A tick that already has its job (a trigger at the same instant, say): no row, and the caller
-- records the tick as a duplicate. The constraint one_job_per_schedule_tick decides, whatever
-- the callers' own precautions.
ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING
RETURNING id, schedule_id, scheduled_for, queue
"""


def job_insert_ticks(
    *,
    schedule_ids: Sequence[UUID],
    ticks: Sequence[datetime],
    run_at: Sequence[datetime],
    ids: Sequence[UUID | None] | None = None,
    now: datetime | None = None,
) -> dict[tuple[UUID, datetime], UUID]:
    """Store the PENDING job of each schedule tick (``schedule_ids[i]``, ``ticks[i]``), due at
    ``run_at[i]``, with id ``ids[i]`` (None: a new one), in one ``INSERT … SELECT``; return the
    id of each job stored by its (schedule, tick). A tick that already has its job is skipped.
    The dispatchers are woken when the caller's transaction commits.

    Each job's columns are those :func:`job_values` gives its schedule's job_template, computed
    in SQL: building them in Python cost 0.12 ms a job, 1.2 s for a minute of 10,000 schedules.
    """
    params = _TICK_CONSTANTS | {
        "ids": list(ids) if ids is not None else [None] * len(schedule_ids),
        "schedules": list(schedule_ids),
        "ticks": list(ticks),
        "run_at": list(run_at),
        "now": now or timezone.now(),
    }
    with prepared_cursor() as cursor:
        cursor.execute(_INSERT_TICKS, params, prepare=True, binary=True)
        rows = cursor.fetchall()
    stored = {(schedule_id, tick): job_id for job_id, schedule_id, tick, _ in rows}
    if stored:
        notify_dispatchers()
    for queue, count in Counter(queue for *_, queue in rows).items():
        metrics.JOBS_SUBMITTED.labels(queue).inc(count)
    return stored
