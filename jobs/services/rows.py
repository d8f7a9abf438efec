"""The one way a job row is written: its values from a spec, and the statements that store it.

Three paths insert jobs (a submission, a bulk submission, a schedule's tick); all of them build
their rows with :func:`job_values` and store them with :func:`job_insert`, which NOTIFYs the
dispatchers in the same commit. Columns come from the model; values are always parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Field, JSONField
from django.utils import timezone

from jobplatform.db import prepared_cursor
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
        "steps": [
            {"type": s["type"], "params": s.get("params", {})} | _step_extras(s) for s in spec.steps
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
        "concurrency_key": spec.concurrency_key,
        "max_concurrency": spec.max_concurrency,
        "rate_limit": spec.rate_limit,
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
_INSERT = (
    "WITH new AS (INSERT INTO jobs_job ({columns}) VALUES ({values}) {on_conflict} RETURNING id) "
    "SELECT id, pg_notify(%s, '') FROM new"
).format(
    columns=_COLUMNS,
    values=", ".join("%s::jsonb" if f.attname in _JSON_FIELDS else "%s" for f in JOB_FIELDS),
    on_conflict="{on_conflict}",
)
_INSERT_ONE = _INSERT.format(on_conflict="")
# A schedule's tick that already has its job (a redelivered message, a second beat): no row.
_INSERT_TICK = _INSERT.format(
    on_conflict="ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING"
)


def job_insert(
    rows: Sequence[Mapping[str, Any]], *, skip_tick_conflict: bool = False
) -> list[UUID]:
    """Store jobs made by :func:`job_values`; return the ids stored. The dispatchers are woken
    in the same commit (at once in autocommit, else when the caller's transaction commits).

    One row is one prepared INSERT; several are one COPY, whose cost per row is a fraction of
    an INSERT's (docs/performance.md). ``skip_tick_conflict``: a schedule tick that already has
    its job is skipped, not an error (single rows only).
    """
    if len(rows) == 1:
        statement = _INSERT_TICK if skip_tick_conflict else _INSERT_ONE
        with prepared_cursor() as cursor:
            cursor.execute(statement, [*_cells(rows[0]), DISPATCH_CHANNEL], prepare=True)
            return [row[0] for row in cursor.fetchall()]
    assert not skip_tick_conflict, "COPY cannot skip conflicts: insert ticks one by one"
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY jobs_job ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(_cells(row))
    notify_dispatchers()
    return [row["id"] for row in rows]
