"""Retention figures: a week of finished work made with generate_series, its size, the purge's rate.

    DATABASE_URL=postgres://.../somedb python -m bench.retention --jobs 2000000 --days 7 --keep 3.5

    DATABASE_URL=... python -m bench.retention --hot-only --keep 1 --hot-seconds 20 --pairs 3

``--hot-only``: on the rows a first run left, the hot path's writes (bulk submissions of 100
jobs, one COPY each, on the same tables and indexes) for ``--hot-seconds``, alternately alone and
beside ``purge_finished --loop`` deleting what finished more than ``--keep`` days ago; the
slowdown is the median of the pairs' ratios (the machine's speed drifts between runs).

Runs against a migrated database of its own (never a live one: it deletes). Each simulated job
succeeded in one attempt of two steps, as the throughput bench's jobs do, spread evenly over the
last ``--days`` days. Reports the tables' and indexes' sizes, then purges everything finished
more than ``--keep`` days ago with the dispatcher's own code (batches of ``--batch``) and reports
the rate and the batches' durations, then the sizes after VACUUM. docs/operations.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg

TABLES = ("jobs_job", "executions_execution", "executions_stepresult")
CHUNK = 100_000

# One chunk of finished jobs, each with its attempt and two step results, in one statement.
_SIMULATE_SQL = """
WITH owner AS (SELECT id FROM auth_user ORDER BY id LIMIT 1),
new_jobs AS (
    INSERT INTO jobs_job (id, owner_id, name, steps, input, queue, priority, max_retries,
        retry_backoff, retry_backoff_max, retry_jitter, timeout, run_at, trace_id,
        request_fingerprint, status, attempts, next_step, step_outputs, result, version,
        created_at, updated_at, queued_at, started_at, finished_at, retry_base)
    SELECT gen_random_uuid(), (SELECT id FROM owner), 'sim-' || (g %% 50),
        '[{"type": "log", "params": {"message": "hi"}}, {"type": "compute", "params": {"n": 10}}]',
        '{"n": 1}', 'default', 5, 3, 2, 300, true, 3600, t, md5(g::text), '', 'succeeded', 1, 2,
        '[null, 42]', '42', 3, t, t + interval '60 ms', t, t + interval '10 ms',
        t + interval '60 ms', 0
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
         LATERAL (SELECT %(start)s::timestamptz + g * %(step)s::float8 * interval '1 second'
                  AS t) AS at
    RETURNING id, created_at
), attempts AS (
    INSERT INTO executions_execution (job_id, attempt, status, worker, delivery_id, started_at,
        finished_at, heartbeat_at, will_retry)
    SELECT id, 1, 'succeeded', 'worker@sim', gen_random_uuid()::text,
        created_at + interval '10 ms', created_at + interval '60 ms',
        created_at + interval '10 ms', false
    FROM new_jobs
    RETURNING id, started_at
)
INSERT INTO executions_stepresult (execution_id, index, type, status, output, started_at,
    duration_ms)
SELECT id, i, CASE i WHEN 0 THEN 'log' ELSE 'compute' END, 'succeeded',
    CASE i WHEN 0 THEN 'null'::jsonb ELSE '42'::jsonb END, started_at, 20
FROM attempts, generate_series(0, 1) AS i
"""


def sizes(db: psycopg.Connection[Any]) -> dict[str, dict[str, float]]:
    """Rows, table (heap + TOAST) and index size in MiB of each table."""
    out = {}
    for table in TABLES:
        row = db.execute(
            "SELECT (SELECT count(*) FROM " + table + "), "  # noqa: S608 - a constant
            "pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
            [table, table],
        ).fetchone()
        assert row is not None
        out[table] = {"rows": row[0], "table_mib": row[1] / 2**20, "indexes_mib": row[2] / 2**20}
    return out


def simulate(db: psycopg.Connection[Any], *, jobs: int, days: float, ago: float = 0) -> float:
    """``jobs`` finished jobs spread over ``days`` days that ended ``ago`` days ago; returns the
    seconds taken."""
    began = time.monotonic()
    step = days * 86400 / jobs
    row = db.execute("SELECT now() - %s::interval", [timedelta(days=days + ago)]).fetchone()
    assert row is not None
    start = row[0]
    for first in range(1, jobs + 1, CHUNK):
        db.execute(
            _SIMULATE_SQL,
            {"first": first, "last": min(jobs, first + CHUNK - 1), "start": start, "step": step},
        )
    db.execute("VACUUM ANALYZE")
    return time.monotonic() - began


def hot_path(seconds: float) -> float:
    """Jobs per second stored by bulk submissions of 100 for ``seconds``."""
    from django.contrib.auth.models import User

    from jobs.services import JobSpec, job_submit_many

    owner = User.objects.order_by("id").first()
    assert owner is not None
    specs = [JobSpec(name="hot", steps=[{"type": "log", "params": {"message": "hi"}}])] * 100
    stored, began = 0, time.monotonic()
    while time.monotonic() - began < seconds:
        stored += len(job_submit_many(owner=owner, specs=specs).ids)
    return stored / (time.monotonic() - began)


def hot_beside_purge(*, keep: float, seconds: float, pairs: int) -> dict[str, Any]:
    """The hot path alone, then beside a purge, ``pairs`` times."""
    from django.db import connection

    runs: list[tuple[float, float, int]] = []
    for _ in range(pairs):
        alone = hot_path(seconds)
        before = _old_jobs(connection, keep)
        purge = subprocess.Popen(
            [sys.executable, "manage.py", "purge_finished", "--days", str(keep), "--loop"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            beside = hot_path(seconds)
        finally:
            purge.terminate()
            purge.wait(timeout=30)
        runs.append((alone, beside, before - _old_jobs(connection, keep)))
    return {
        "pairs": [
            {"alone_jobs_per_s": a, "beside_purge_jobs_per_s": b, "purged_jobs": n}
            for a, b, n in runs
        ],
        "ratio_median": statistics.median(b / a for a, b, _ in runs),
        "purged_jobs_per_s_median": statistics.median(n / seconds for _, _, n in runs),
    }


def _old_jobs(connection: Any, keep: float) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM jobs_job WHERE finished_at < now() - %s::interval",
            [timedelta(days=keep)],
        )
        return int(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2_000_000)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--keep", type=float, default=3.5, help="retention in days")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--hot-only", action="store_true", help="the hot path beside a purge")
    parser.add_argument("--hot-seconds", type=float, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")
    django.setup()
    from django.db import connection

    from executions.retention import RetentionPolicy, job_purge_finished

    if args.hot_only:
        print(
            json.dumps(
                hot_beside_purge(keep=args.keep, seconds=args.hot_seconds, pairs=args.pairs),
                indent=1,
            )
        )
        return
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as db:
        results: dict[str, Any] = {"jobs": args.jobs, "days": args.days, "keep_days": args.keep}
        results["simulate_s"] = simulate(db, jobs=args.jobs, days=args.days)
        results["before"] = sizes(db)
        print(json.dumps(results, indent=1), file=sys.stderr)

        batches: list[float] = []
        purged, began = 0, time.monotonic()
        policy = RetentionPolicy(days=args.keep)
        while True:
            t0 = time.monotonic()
            n = job_purge_finished(policy=policy, batch_size=args.batch, budget=0)
            batches.append(time.monotonic() - t0)
            purged += n
            if n < args.batch:
                break
        elapsed = time.monotonic() - began
        connection.close()
        results["purge"] = {
            "jobs": purged,
            "seconds": elapsed,
            "jobs_per_s": purged / elapsed,
            "rows_per_s": purged * 4 / elapsed,  # a job, its attempt and two step results
            "batch_ms_p50": statistics.median(batches) * 1000,
            "batch_ms_p99": sorted(batches)[int(len(batches) * 0.99)] * 1000,
            "batch_ms_max": max(batches) * 1000,
        }
        results["after_purge"] = sizes(db)
        db.execute("VACUUM ANALYZE")
        results["after_vacuum"] = sizes(db)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
