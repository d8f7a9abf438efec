"""The one way a job row is written: its values from a spec, and the statements that store it.

Three paths insert jobs. A submission and a bulk submission build their rows with
:func:`job_values` and store them with :func:`job_insert`; a schedule sweep stores thousands of
ticks at once with :func:`job_insert_from_templates`, which computes the same columns in SQL from
each schedule's job template (``tests/jobs/test_job_rows.py`` checks that both give the same
row). Each NOTIFYs the dispatchers in the same commit. Columns come from the model; values are
always parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Field, JSONField
from django.utils import timezone

from jobplatform.db import prepared_cursor
from jobs.lifecycle import sql
from jobs.models import Job
from jobs.services.common import DISPATCH_CHANNEL, notify_dispatchers
from jobs.services.spec import JobSpec

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
        "steps": [
            # As job_insert_from_templates stores them too (_STEPS_SQL).
            {"type": s["type"], "params": s.get("params", {})} | _step_extras(s)
            for s in spec.steps
        ],
        "input": spec.input,
        "queue": spec.queue,
        "priority": spec.priority,
        "max_retries": spec.max_retries,
        "retry_backoff": spec.retry_backoff,
        "retry_backoff_max": spec.retry_backoff_max,
        "retry_jitter": spec.retry_jitter,
        "timeout": spec.timeout,
        "run_at": spec.run_at or now,
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
            return [row[0] for row in cursor.fetchall()]
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY jobs_job ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(_cells(row))
    notify_dispatchers()
    return [row["id"] for row in rows]


# --- jobs from templates, set-based --------------------------------------------------------------


@dataclass(frozen=True)
class TemplatedJob:
    """One job to make from a template: what differs between the jobs of one template."""

    id: UUID
    owner_id: Any
    template: int  # index into the templates passed along
    run_at: datetime
    schedule_id: UUID | None = None
    scheduled_for: datetime | None = None


# A template is a JobSpec as JSON without run_at (a schedule's job_template): each key that is
# missing takes JobSpec's default, as JobSpec(**template) would.
_SPEC_DEFAULTS = {
    f.name: (f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
    for f in fields(JobSpec)
    if f.name not in ("name", "steps", "run_at")
}
# job_values' normalisation of steps, in SQL: type and params (default {}), and timeout when set.
_STEPS_SQL = """(
    SELECT coalesce(jsonb_agg(
        jsonb_build_object('type', step->'type', 'params', coalesce(step->'params', '{}'))
        || CASE WHEN jsonb_typeof(step->'timeout') = 'number'
                THEN jsonb_build_object('timeout', step->'timeout') ELSE '{}' END
        ORDER BY position), '[]')
    FROM jsonb_array_elements(t.doc->'steps') WITH ORDINALITY AS s(step, position)
)"""


def _cast(field: Field[Any, Any], expression: str) -> str:
    """``expression`` as the column's type. Text is left to the assignment cast, which refuses
    a value too long for the column where an explicit cast to varchar(n) would cut it short."""
    if field.attname in _JSON_FIELDS:
        return f"CAST({expression} AS jsonb)"
    if field.get_internal_type() in ("CharField", "TextField"):
        return expression
    return f"CAST({expression} AS {field.cast_db_type(connection)})"


def _template_value(field: Field[Any, Any]) -> str:
    key = field.attname
    if key in _JSON_FIELDS:
        return f"coalesce(t.doc->'{key}', %({key})s::jsonb)"
    return _cast(field, f"coalesce(t.doc->>'{key}', %({key})s)")


def _templated_columns() -> tuple[str, dict[str, Any]]:
    """The SELECT list of the templated insert, one expression per column, and its constants."""
    per_row = {
        "id": "v.id",
        "owner_id": "v.owner_id",
        "name": "t.doc->>'name'",
        "steps": "t.steps",
        "run_at": "v.run_at",
        "schedule_id": "v.schedule_id",
        "scheduled_for": "v.scheduled_for",
        "created_at": "%(now)s",
        "updated_at": "%(now)s",
        "status": sql(Job.Status.PENDING),
        "trace_id": "replace(gen_random_uuid()::text, '-', '')",  # new_trace_id(): a uuid4's hex
        "idempotency_key": "NULL",
        "request_fingerprint": "''",
    }
    constants: dict[str, Any] = {}
    expressions = []
    for field in JOB_FIELDS:
        key = field.attname
        if key in per_row:
            expressions.append(per_row[key])
        elif key in _SPEC_DEFAULTS:
            default = _SPEC_DEFAULTS[key]
            constants[key] = json.dumps(default) if key in _JSON_FIELDS else str(default)
            expressions.append(_template_value(field))
        else:  # the model's default, the same for every row (job_values takes it too)
            default = field.get_default()
            is_json = key in _JSON_FIELDS and default is not None  # None is NULL, as in _cells
            constants[key] = json.dumps(default) if is_json else default
            expressions.append(_cast(field, f"%({key})s"))
    return ", ".join(expressions), constants


_TEMPLATED_SELECT, _TEMPLATED_CONSTANTS = _templated_columns()
_OWNER_TYPE = Job._meta.get_field("owner").cast_db_type(connection)
_INSERT_FROM_TEMPLATES = f"""
WITH t AS (
    -- Each template once, however many jobs are made from it.
    SELECT position AS template, doc, {_STEPS_SQL} AS steps
    FROM unnest(%(templates)s::jsonb[]) WITH ORDINALITY AS t(doc, position)
), v AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(owners)s::{_OWNER_TYPE}[], %(template)s::integer[],
        %(run_at)s::timestamptz[], %(schedules)s::uuid[], %(scheduled_for)s::timestamptz[]
    ) WITH ORDINALITY AS v(id, owner_id, template, run_at, schedule_id, scheduled_for, position)
)
INSERT INTO jobs_job ({_COLUMNS})
SELECT {_TEMPLATED_SELECT}
FROM v JOIN t USING (template)
ORDER BY v.position
-- A schedule's tick that already has its job (a second sweeper got there first, a trigger at
-- the same instant): no row, and the caller records the tick as a duplicate.
ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING
RETURNING id
"""


def job_insert_from_templates(
    *, templates: Sequence[str], jobs: Sequence[TemplatedJob], now: datetime | None = None
) -> set[UUID]:
    """Store PENDING jobs made from templates (JobSpec as JSON text, without run_at), all in one
    ``INSERT … SELECT``; return the ids stored. A job whose (schedule_id, scheduled_for) already
    has one is skipped. The dispatchers are woken when the caller's transaction commits.

    The columns are those :func:`job_values` gives the template's JobSpec, computed in SQL:
    building them in Python cost 0.12 ms a job, 1.2 s for a sweep of 10,000 schedules.
    """
    if not jobs:
        return set()
    params = _TEMPLATED_CONSTANTS | {
        "templates": list(templates),
        "ids": [j.id for j in jobs],
        "owners": [j.owner_id for j in jobs],
        "template": [j.template + 1 for j in jobs],  # WITH ORDINALITY counts from 1
        "run_at": [j.run_at for j in jobs],
        "schedules": [j.schedule_id for j in jobs],
        "scheduled_for": [j.scheduled_for for j in jobs],
        "now": now or timezone.now(),
    }
    with prepared_cursor() as cursor:
        cursor.execute(_INSERT_FROM_TEMPLATES, params, prepare=True)
        inserted = {row[0] for row in cursor.fetchall()}
    if inserted:
        notify_dispatchers()
    return inserted
