"""``python -m bench``: each scenario side by side with its baseline, medians of several runs.

Scenarios (issue #6): throughput against bare Celery, submission (single and bulk), latency,
scale (list/filter and release rate with 1,000,000 jobs in the table) and worker memory;
(issue #3) schedule: the start lag of jobs submitted for future instants; (issue #13) fairness:
a client's start lag behind another client's flood, against the release without a broker bound,
and flowcost: throughput with flow control off, at its defaults, and configured but not binding;
(issue #18) schedules: how soon after a real minute tick 10,000 every-minute schedules have their
jobs; (issue #17) iobound: jobs of one http step to a slow local server, the platform on the
threads pool against bare Celery on the same pool, and mixed: short jobs arriving behind long
ones, on one shared queue and with a queue per kind.
Results are printed as a table and written to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.baseline import app as baseline_app
from bench.retention import simulate
from bench.stack import REPO, WEB_PORT, Stack, own_runq_wait, rss_kib

NOOP = [{"type": "sleep", "params": {"seconds": 0}}]


def median_of(runs: int, measure: Callable[[], dict[str, float]]) -> dict[str, Any]:
    return medians([measure() for _ in range(runs)])


def medians(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over the samples, and the samples themselves."""
    numbers = [key for key, value in samples[0].items() if isinstance(value, int | float)]
    return {key: statistics.median(sample[key] for sample in samples) for key in numbers} | {
        "runs": samples
    }


class CpuMeter:
    """CPU milliseconds per job of each process of the stack, and of this process, over a run,
    and the milliseconds per job each process of the stack waited for a core.

    Steadier than jobs/s on a machine whose speed drifts: a job costs about the same CPU when
    the machine is slow, it just gets it later (docs/performance.md). The waits show how much
    later: a process that waits for a core delays every process waiting on it.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.before = stack.cpu()
        self.waits_before = self.waits()
        self.own_before = time.process_time()

    def per_job(self, count: int) -> dict[str, float]:
        after = self.stack.cpu()  # before the processes stop: a stopped process is gone
        used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        used["bench"] = time.process_time() - self.own_before
        return per_job_ms(used, count)

    def waits_per_job(self, count: int) -> dict[str, float]:
        after = self.waits()
        return per_job_ms({n: after[n] - self.waits_before.get(n, 0.0) for n in after}, count)

    def waits(self) -> dict[str, float]:
        """Run-queue waits so far of the stack's processes and of this one (the client)."""
        return self.stack.runq_waits() | {"bench": own_runq_wait(os.getpid())}


def per_job_ms(seconds: dict[str, float], count: int) -> dict[str, float]:
    return {name: round(1000 * value / count, 3) for name, value in seconds.items()}


# --- throughput ------------------------------------------------------------------------------


def submit_bulk(
    stack: Stack,
    count: int,
    steps: list[dict[str, Any]] = NOOP,
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """``count`` jobs through ``POST /api/v1/jobs/bulk/``; ``extra(i)``: more fields of job i."""
    for start in range(0, count, 1000):
        batch = [
            {"name": "bench", "steps": steps, **(extra(start + i) if extra else {})}
            for i in range(min(1000, count - start))
        ]
        response = stack.http.post("/api/v1/jobs/bulk/", json={"jobs": batch})
        response.raise_for_status()


def await_succeeded(stack: Stack, count: int, timeout: float = 1800, poll: float = 0.5) -> float:
    """Epoch seconds of the last finish, once ``count`` jobs have succeeded.

    The figure is the last ``finished_at``, so how often this looks does not change it; looking
    seldom keeps the counting query (a scan of the whole table) from taking CPU from the platform
    it measures, which it did at every 50 ms (12% of a core).
    """
    deadline = time.monotonic() + timeout
    while True:
        [(done, failed, last)] = stack.sql(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status = 'failed'), max(finished_at) FROM jobs_job"
            # Not the old finished rows --purge-rows simulates (40 days old): this run's only.
            " WHERE created_at > now() - interval '1 day'"
        )
        if failed:
            raise RuntimeError(f"{failed} benchmark jobs failed")
        if done >= count:
            return last.timestamp()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {count} jobs succeeded in time")
        time.sleep(poll)


def platform_throughput(
    stack: Stack,
    count: int,
    extra: Callable[[int], dict[str, Any]] | None = None,
    prepare: Callable[[Stack], None] | None = None,
    *,
    batch_max: int | None = None,
    steps: list[dict[str, Any]] = NOOP,
    worker: dict[str, Any] | None = None,
    purge_rows: int = 0,
) -> dict[str, Any]:
    """The platform; with ``batch_max``, messages of up to that many jobs (1: one per message);
    ``worker``: start_worker's pool, concurrency and env.

    ``purge_rows``: that many finished jobs 40 days old (each with its attempt and two step
    results) are deleted by ``purge_finished --loop`` while the run goes on: retention at full
    speed beside the hot path, its CPU counted in the platform's."""
    stack.reset()
    if prepare:
        prepare(stack)
    purged: dict[str, float] = {}
    if purge_rows:
        simulate(stack.db, jobs=purge_rows, days=1, ago=40)
        stack.sql("CHECKPOINT")  # the simulated rows written out before the run, as reset() does
    stack.start_dispatcher(env={"JOBPLATFORM_BATCH_MAX": str(batch_max)} if batch_max else None)
    stack.start_worker(**(worker or {}))
    try:
        meter = CpuMeter(stack)
        if purge_rows:
            stack.start("purge", [sys.executable, "manage.py", "purge_finished", "--days", "30",
                                  "--loop"])  # fmt: skip
        began = time.time()
        submit_bulk(stack, count, steps, extra=extra)
        ended = await_succeeded(stack, count)
        cpu = meter.per_job(count)
        waits = meter.waits_per_job(count)
    finally:
        stack.stop("purge")
        stack.stop("worker")
        stack.stop("dispatcher")
    if purge_rows:
        left = stack.sql(
            "SELECT count(*) FROM jobs_job WHERE created_at < now() - interval '30 days'"
        )
        purged = {"purged_jobs": purge_rows - left[0][0],
                  "purged_jobs_per_s": (purge_rows - left[0][0]) / (ended - began)}  # fmt: skip
    # The bench process is the client here (bulk requests, polling): not the platform's cost.
    total = sum(ms for name, ms in cpu.items() if name != "bench")
    waited = sum(ms for name, ms in waits.items() if name != "bench")
    return {"jobs_per_s": count / (ended - began), "seconds": ended - began,
            "cpu_ms_per_job": total, "cpu_split": cpu,
            "runq_wait_ms_per_job": waited, "runq_wait_split": waits, **purged}  # fmt: skip


def baseline_throughput(
    stack: Stack,
    count: int,
    chunk: int = 1,
    *,
    task: str = "baseline.noop",
    args: tuple[Any, ...] = (),
    worker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bare Celery: one ``task`` (a no-op) per message, or with ``chunk`` > 1, Celery's own
    batching (``chunks``: each message a ``celery.starmap`` of ``chunk`` calls); ``worker``:
    start_baseline_worker's pool and concurrency."""
    stack.reset()
    stack.start_baseline_worker(**(worker or {}))
    noop = baseline_app.tasks[task]
    try:
        meter = CpuMeter(stack)
        began = time.time()
        with baseline_app.producer_or_acquire() as producer:
            if chunk > 1:
                noop.chunks([args] * count, chunk).group().apply_async(
                    queue="baseline", producer=producer
                )
            else:
                for _ in range(count):
                    noop.apply_async(args, queue="baseline", producer=producer)
        ended = await_drained(stack)
        cpu = meter.per_job(count)
        waits = meter.waits_per_job(count)
    finally:
        stack.stop("baseline-worker")
    # The bench process publishes every task here, as the dispatcher does for the platform: it
    # counts (and the web server, idle, adds nothing).
    return {"jobs_per_s": count / (ended - began), "seconds": ended - began,
            "cpu_ms_per_job": sum(cpu.values()), "cpu_split": cpu,
            "runq_wait_ms_per_job": sum(waits.values()), "runq_wait_split": waits}  # fmt: skip


def throughput(
    stack: Stack, runs: int, count: int, batch_max: int, purge_rows: int = 0
) -> dict[str, Any]:
    """Rounds of four runs: the platform with batches of up to ``batch_max`` jobs, the platform
    with one job per message, bare Celery, and bare Celery with ``chunks`` of ``batch_max``.
    Each ratio is the median of the rounds' ratios to the bare Celery run of the same round.
    ``purge_rows``: the batched platform runs beside a retention purge (platform_throughput).

    The machine's speed drifts within minutes (bare Celery gave 391-617 tasks/s in one run of
    three), so each run is compared with the baseline run of its own round, not with a block of
    baseline runs taken later.
    """
    rounds = [
        {
            "platform": platform_throughput(
                stack, count, batch_max=batch_max, purge_rows=purge_rows
            ),
            "platform_k1": platform_throughput(stack, count, batch_max=1),
            "baseline": baseline_throughput(stack, count),
            "baseline_chunks": baseline_throughput(stack, count, chunk=batch_max),
        }
        for _ in range(runs)
    ]
    result: dict[str, Any] = {"batch_max": batch_max}
    for name in rounds[0]:
        result[name] = medians([r[name] for r in rounds])
        if name != "baseline":
            ratios = [r[name]["jobs_per_s"] / r["baseline"]["jobs_per_s"] for r in rounds]
            cpu = [r["baseline"]["cpu_ms_per_job"] / r[name]["cpu_ms_per_job"] for r in rounds]
            result[f"{name}_ratio"] = statistics.median(ratios)
            result[f"{name}_ratios"] = ratios
            result[f"{name}_cpu_ratio"] = statistics.median(cpu)
            result[f"{name}_cpu_ratios"] = cpu
    return result


class SlowServer:
    """A local HTTP server (keep-alive, many requests at once) answering each request after
    ``delay`` seconds: the remote API of the I/O-bound scenario."""

    def __init__(self, delay: float) -> None:
        body = b'{"ok": true}'

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # every worker thread may connect at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def iobound(
    stack: Stack, runs: int, count: int, concurrency: int, batch_max: int, delay: float = 0.1
) -> dict[str, Any]:
    """Issue #17's I/O-bound scenario: ``count`` jobs of one http step to a local server that
    answers after ``delay`` s, the platform's worker on the threads pool (the I/O pool, its
    deadlines kept by the watchdog) against bare Celery doing the same GET on the same pool and
    concurrency. Rounds of three runs: the platform with batches of up to ``batch_max`` jobs,
    with one job per message, and bare Celery; ratios per round, as in ``throughput``."""
    server = SlowServer(delay)
    worker = {"pool": "threads", "concurrency": concurrency}
    # The server is on 127.0.0.1, which the http step refuses by default.
    platform_worker = worker | {"env": {"JOBPLATFORM_HTTP_ALLOW": "127.0.0.1"}}
    steps = [{"type": "http", "params": {"url": server.url}}]
    try:
        rounds = [
            {
                "platform": platform_throughput(
                    stack, count, batch_max=batch_max, steps=steps, worker=platform_worker
                ),
                "platform_k1": platform_throughput(
                    stack, count, batch_max=1, steps=steps, worker=platform_worker
                ),
                "baseline": baseline_throughput(
                    stack, count, task="baseline.get", args=(server.url,), worker=worker
                ),
            }
            for _ in range(runs)
        ]
    finally:
        server.close()
    for r in rounds:
        # The bench process serves every request of both sides: its CPU counts for neither (bare
        # Celery's publishing, which it also does, goes uncounted with it).
        bare = r["baseline"]
        bare["cpu_ms_per_job"] -= bare["cpu_split"].get("bench", 0.0)
        bare["runq_wait_ms_per_job"] -= bare["runq_wait_split"].get("bench", 0.0)
    result: dict[str, Any] = {
        "concurrency": concurrency,
        "delay_s": delay,
        "batch_max": batch_max,
        # What the pool could do at best: every thread always waiting on the server.
        "ideal_jobs_per_s": concurrency / delay,
    }
    for name in rounds[0]:
        result[name] = medians([r[name] for r in rounds])
        if name != "baseline":
            ratios = [r[name]["jobs_per_s"] / r["baseline"]["jobs_per_s"] for r in rounds]
            result[f"{name}_ratio"] = statistics.median(ratios)
            result[f"{name}_ratios"] = ratios
    return result


# --- mixed ------------------------------------------------------------------------------------

MIXED_QUEUES = "default,slow"


def arrive(stack: Stack, count: int, rate: float, tick: float = 0.1) -> float:
    """``count`` no-op jobs arriving at ``rate`` a second: every ``tick`` seconds a bulk request
    of ``rate * tick`` jobs, on a fixed clock (after a slow request the next ones go at once);
    the seconds the arrival took. Bulk requests of a few dozen, not one request per job: the
    jobs arrive as steadily, and the client and the web server leave the two cores to the
    workers measured."""
    per_tick = max(1, round(rate * tick))
    began = time.monotonic()
    for n, start in enumerate(range(0, count, per_tick)):
        wait = began + n * tick - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        jobs = [{"name": "mixed-noop", "steps": NOOP}] * min(per_tick, count - start)
        stack.http.post("/api/v1/jobs/bulk/", json={"jobs": jobs}).raise_for_status()
    return time.monotonic() - began


def mixed_run(
    stack: Stack, *, split: bool, slow: int, seconds: float, fast: int, rate: float
) -> dict[str, Any]:
    """``slow`` jobs of one ``seconds`` sleep submitted at once, then ``fast`` no-op jobs
    arriving at ``rate`` a second. Shared (``split`` false): all on queue "default", one worker
    ``-c 2``. Split: the sleeps on queue "slow" with a worker ``-c 2`` of their own, the no-ops
    on "default" with another. The no-ops' start lag (first attempt's ``started_at`` -
    ``created_at``), and when the last sleep finished after the first was submitted."""
    stack.reset()
    stack.start_dispatcher()
    stack.start_worker()  # "default"
    if split:
        stack.start_worker("worker-slow", queues="slow")
    load = [os.getloadavg()[0]]
    try:
        began = time.time()
        queue = {"queue": "slow"} if split else {}
        sleep = [{"type": "sleep", "params": {"seconds": seconds}}]
        batch = [{"name": "mixed-slow", "steps": sleep, **queue}] * slow
        for start in range(0, slow, 1000):
            response = stack.http.post(
                "/api/v1/jobs/bulk/", json={"jobs": batch[start : start + 1000]}
            )
            response.raise_for_status()
        arrival = arrive(stack, fast, rate)
        await_succeeded(stack, slow + fast)
        load.append(os.getloadavg()[0])
    finally:
        stack.stop("worker-slow")
        stack.stop("worker")
        stack.stop("dispatcher")
    lags = sorted(
        1000 * float(lag)
        for (lag,) in stack.sql(
            "SELECT extract(epoch FROM e.started_at - j.created_at) FROM executions_execution e"
            " JOIN jobs_job j ON j.id = e.job_id WHERE j.name = 'mixed-noop' AND e.attempt = 1"
        )
    )
    [(slow_done, fast_done)] = stack.sql(
        "SELECT max(finished_at) FILTER (WHERE name = 'mixed-slow'),"
        " max(finished_at) FILTER (WHERE name = 'mixed-noop') FROM jobs_job"
    )
    return {
        "noop_lag_p50_ms": percentile(lags, 50),
        "noop_lag_p99_ms": percentile(lags, 99),
        "noop_lag_max_ms": lags[-1],
        "slow_done_s": slow_done.timestamp() - began,
        "all_done_s": max(slow_done, fast_done).timestamp() - began,
        "arrival_s": arrival,
        "arrival_per_s": fast / arrival,
        "loadavg_before": load[0],
        "loadavg_after": load[-1],
    }


def mixed(
    stack: Stack, runs: int, *, slow: int, seconds: float, fast: int, rate: float
) -> dict[str, Any]:
    """Issue #17's mixed scenario: short jobs behind long ones on one shared queue, and with a
    queue per kind (docs/operations.md#scaling-workers-and-queues), in rounds of the two runs.
    The queues "default" and "slow" are declared for every process (web restarted with them)."""
    stack.overrides = {"JOBPLATFORM_QUEUES": MIXED_QUEUES}
    stack.stop("web")
    stack.start_web()
    args: dict[str, Any] = {"slow": slow, "seconds": seconds, "fast": fast, "rate": rate}
    try:
        rounds = [
            {"shared": mixed_run(stack, split=False, **args),
             "split": mixed_run(stack, split=True, **args)}
            for _ in range(runs)
        ]  # fmt: skip
    finally:
        stack.overrides = {}
        stack.stop("web")
        stack.start_web()
    ratios = [r["shared"]["noop_lag_p99_ms"] / r["split"]["noop_lag_p99_ms"] for r in rounds]
    return {
        **args,
        # What two processes need for the sleeps at best, whoever else runs.
        "slow_ideal_s": slow * seconds / 2,
        "shared": medians([r["shared"] for r in rounds]),
        "split": medians([r["split"] for r in rounds]),
        "p99_ratio": statistics.median(ratios),
        "p99_ratios": ratios,
    }


def baseline_start_lag(stack: Stack, count: int) -> dict[str, float]:
    """Bare Celery beside the schedules' start target: ``count`` tasks that do nothing but note
    when they started, published at once (one pipeline, as the dispatcher publishes) to one
    prefork worker of two processes; how long after the publishing began each started."""
    stack.start_baseline_worker()
    client = stack.baseline_redis
    client.delete("started")
    task = baseline_app.tasks["baseline.started"]
    try:
        since = time.time()
        with baseline_app.producer_or_acquire() as producer, producer.batch(max_size=count):
            for _ in range(count):
                task.apply_async((since,), queue="baseline", producer=producer)
        published = time.time() - since
        deadline = time.monotonic() + 1200
        while client.llen("started") < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} bare Celery tasks did not start in time")
            time.sleep(0.1)
    finally:
        stack.stop("baseline-worker")
    lags = sorted(1000 * float(lag) for lag in client.lrange("started", 0, -1))
    return {
        "bare_published_ms": 1000 * published,
        "bare_started_p50_ms": percentile(lags, 50),
        "bare_started_p99_ms": percentile(lags, 99),
        "bare_started_max_ms": lags[-1],
    }


def await_drained(stack: Stack, timeout: float = 1800) -> float:
    """When no baseline message is queued or unacknowledged: every task has run."""
    client = stack.baseline_redis
    deadline = time.monotonic() + timeout
    while True:
        queued = sum(client.llen(key) for key in client.scan_iter("baseline*"))
        if queued == 0 and client.hlen("unacked") == 0:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError("the baseline did not drain")
        time.sleep(0.02)


# --- submission ------------------------------------------------------------------------------


def single_submissions(stack: Stack, count: int, clients: int = 8) -> dict[str, float]:
    """``count`` jobs through ``POST /api/v1/jobs/``, one per request, from ``clients`` threads.

    Each client is a persistent ``http.client`` connection, not httpx: on two cores the load
    generator's own CPU is taken from the server it measures, and httpx cost 1.8 ms per request
    against http.client's 0.3 (docs/performance.md).
    """
    stack.reset()
    errors: list[str] = []
    body = json.dumps({"name": "one", "steps": NOOP})
    headers = {"Authorization": stack.authorization, "Content-Type": "application/json"}

    def client(n: int) -> None:
        http = HTTPConnection("127.0.0.1", WEB_PORT, timeout=60)
        try:
            for _ in range(n):
                http.request("POST", "/api/v1/jobs/", body, headers)
                response = http.getresponse()
                text = response.read()
                if response.status != 201:
                    errors.append(text.decode(errors="replace"))
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(count // clients,)) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} submissions failed: {errors[0]}")
    return {"jobs_per_s": (count // clients * clients) / elapsed}


def bulk_submissions(stack: Stack, count: int) -> dict[str, float]:
    stack.reset()
    began = time.perf_counter()
    submit_bulk(stack, count)
    return {"jobs_per_s": count / (time.perf_counter() - began)}


# --- latency ---------------------------------------------------------------------------------


def latency(stack: Stack, count: int) -> dict[str, float]:
    """Submit-commit to execution start, one job at a time on an idle platform."""
    stack.reset()
    stack.start_dispatcher()
    stack.start_worker()
    lags: list[float] = []
    try:
        for _ in range(count):
            job = stack.http.post("/api/v1/jobs/", json={"name": "lat", "steps": NOOP}).json()
            await_succeeded(stack, len(lags) + 1, poll=0.01)
            [(lag,)] = stack.sql(
                "SELECT extract(epoch FROM e.started_at - j.created_at) FROM executions_execution e"
                " JOIN jobs_job j ON j.id = e.job_id WHERE j.id = %s",
                [job["id"]],
            )
            lags.append(float(lag) * 1000)
    finally:
        stack.stop("worker")
        stack.stop("dispatcher")
    lags.sort()
    return {"p50_ms": percentile(lags, 50), "p99_ms": percentile(lags, 99)}


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


# --- schedule --------------------------------------------------------------------------------


def schedule_lag(stack: Stack, count: int, spread: float) -> dict[str, float]:
    """Start lag (execution start - run_at) of ``count`` jobs due at instants spread evenly over
    ``spread`` seconds, submitted ahead of time in one bulk request, on an idle worker pool."""
    stack.reset()
    stack.start_dispatcher()
    stack.start_worker()
    try:
        first = datetime.now(UTC) + timedelta(seconds=5)  # well after the submission commits
        jobs = [
            {
                "name": "at",
                "steps": NOOP,
                "run_at": (first + i * timedelta(seconds=spread / count)).isoformat(),
            }
            for i in range(count)
        ]
        for start in range(0, count, 1000):
            response = stack.http.post(
                "/api/v1/jobs/bulk/", json={"jobs": jobs[start : start + 1000]}
            )
            response.raise_for_status()
        await_succeeded(stack, count, timeout=spread + 300)
        rows = stack.sql(
            "SELECT extract(epoch FROM e.started_at - j.run_at) FROM executions_execution e"
            " JOIN jobs_job j ON j.id = e.job_id WHERE e.attempt = 1"
        )
    finally:
        stack.stop("worker")
        stack.stop("dispatcher")
    lags = sorted(float(lag) * 1000 for (lag,) in rows)
    return {
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": lags[-1],
        "early": sum(lag < 0 for lag in lags),  # started before run_at: must be 0
    }


# --- schedules -------------------------------------------------------------------------------

# A schedule's job_template as the API stores it (a JobSpec without run_at).
SCHEDULE_TEMPLATE = {
    "name": "bench-schedule", "steps": NOOP, "input": {}, "queue": "default", "priority": 5,
    "max_retries": 3, "retry_backoff": 2.0, "retry_backoff_max": 300.0, "retry_jitter": True,
    "timeout": 3600,
}  # fmt: skip
SCHEDULES_SQL = """
INSERT INTO jobs_schedule (id, owner_id, name, cron, timezone, job_template, overlap, misfire,
    misfire_window, misfire_cap, enabled, jitter, pause_note, next_fire_at, version, created_at,
    updated_at, job_hosts)
SELECT gen_random_uuid(), %(owner)s, 'bench-' || i, '* * * * *', 'UTC', %(template)s::jsonb,
    'allow', 'run_once', 3600, 10, true, 0, '', %(first)s, 0, now(), now(),
    '{}'  -- the template has no http step (services.schedule_create computes it)
FROM generate_series(1, %(n)s) AS i
"""


def schedules_on_time(
    stack: Stack, count: int, dispatchers: int = 1, ticks: int = 2
) -> dict[str, Any]:
    """``count`` schedules on ``* * * * *``, written straight into the table; for ``ticks``
    consecutive real minute ticks, how long after the tick each job was created and started.

    ``dispatchers`` dispatchers (each sweeps the schedules, sharing them, and releases jobs) and
    one worker of two processes. Per tick: created (``created_at - scheduled_for``: when the
    sweep's batch wrote it, before the batch committed), committed (when this process, polling
    every 50 ms from a second before the tick, saw half, 99 % and all ``count`` of them: the
    worst tick's), started (the first attempt's ``started_at -
    scheduled_for``), the jobs per tick and any tick fired twice; and what the sweep cost: the
    dispatchers' CPU in it (their log lines), and, from a second before the tick until every job
    was committed, the CPU of the dispatchers and of PostgreSQL and the time they waited for a
    core, and the load average.
    """
    stack.reset()
    stack.sql("TRUNCATE jobs_schedule CASCADE")
    owner = stack.sql("SELECT id FROM auth_user WHERE username = 'bench'")[0][0]
    # The first tick at least 15 s away: the processes are up and idle by then.
    first = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    stack.sql(
        SCHEDULES_SQL,
        {"owner": owner, "template": json.dumps(SCHEDULE_TEMPLATE), "first": first, "n": count},
    )
    stack.sql("ANALYZE jobs_schedule")
    names = [f"dispatcher-{n}" for n in range(1, dispatchers + 1)]
    logs = {name: stack.logs / f"{name}.log" for name in names}
    logged_from = {name: log.stat().st_size if log.exists() else 0 for name, log in logs.items()}
    for name in names:
        stack.start_dispatcher(name, log_level="INFO")
    stack.start_worker()
    per_tick = []
    try:
        for n in range(ticks):
            per_tick.append(sweep_window(stack, first + timedelta(minutes=n), count, names))
        stack.sql("UPDATE jobs_schedule SET enabled = false")  # no further tick adds to the queue
        await_started(stack, count * ticks)
    finally:
        stack.stop("worker")
        for name in names:
            stack.stop(name)
    for sample in per_tick:
        sample |= tick_lags(stack, sample["tick"])
        for lag in ("created", "started"):  # each tick's own figures, besides the pooled ones
            lags = sorted(sample[lag])
            sample[f"{lag}_ms"] = [percentile(lags, 50), percentile(lags, 99), lags[-1]]
        sample["sweeps"] = [
            sweep
            for name, log in logs.items()
            for sweep in swept(log.read_text()[logged_from[name] :])
            if sweep["tick"] == sample["tick"]
        ]
    created = sorted(lag for t in per_tick for lag in t["created"])
    started = sorted(lag for t in per_tick for lag in t["started"])
    bare = baseline_start_lag(stack, count)  # one burst of count, the start target's bound
    return {
        "schedules": count,
        "dispatchers": dispatchers,
        "created_p50_ms": percentile(created, 50),
        "created_p99_ms": percentile(created, 99),
        "created_max_ms": created[-1],
        "committed_p50_ms": max(t["committed_pct_ms"][0] for t in per_tick),
        "committed_p99_ms": max(t["committed_pct_ms"][1] for t in per_tick),
        "committed_max_ms": max(t["committed_ms"] for t in per_tick),
        "started_p50_ms": percentile(started, 50),
        "started_p99_ms": percentile(started, 99),
        "started_max_ms": started[-1],
        "jobs_per_tick_min": min(t["jobs"] for t in per_tick),
        "duplicates": sum(t["duplicates"] for t in per_tick),
        # Per tick: the sweeps' CPU summed over the dispatchers.
        "sweep_cpu_ms": statistics.median(sum(s["cpu_ms"] for s in t["sweeps"]) for t in per_tick),
        **{
            f"{name}_{what}_ms": statistics.median(t[what][name] for t in per_tick)
            for name in ("dispatchers", "postgres")
            for what in ("cpu", "runq_wait")
        },
        "sessions_cpu_ms": statistics.median(t["cpu"]["dispatcher_sessions"] for t in per_tick),
        "loadavg": statistics.median(t["loadavg"] for t in per_tick),
        **bare,
        "ticks": [
            {k: v for k, v in t.items() if k not in ("created", "started")} for t in per_tick
        ],
    }


# The console format's lines (bench.stack starts the dispatchers with it).
SWEPT = re.compile(
    r"^(\S+)Z \[info\s*\] fired (\d+) schedules \((\d+) jobs\) in (\d+) ms, (\d+) ms CPU",
    re.MULTILINE,
)


def swept(log: str) -> list[dict[str, Any]]:
    """The sweeps a dispatcher logged: for which tick (the minute it began in), and its cost."""
    sweeps = []
    for at, schedules, jobs, wall, cpu in SWEPT.findall(log):
        ended = datetime.fromisoformat(at).replace(tzinfo=UTC)
        began = ended - timedelta(milliseconds=int(wall))
        sweeps.append({
            "tick": began.replace(second=0, microsecond=0), "schedules": int(schedules),
            "jobs": int(jobs), "wall_ms": int(wall), "cpu_ms": int(cpu),
        })  # fmt: skip
    return sweeps


def sweep_window(stack: Stack, tick: datetime, count: int, names: list[str]) -> dict[str, Any]:
    """From a second before ``tick`` until its ``count`` jobs are all committed: how long, and
    what the dispatchers ``names`` and PostgreSQL spent (CPU, and waiting for a core), in ms."""
    wait = (tick - datetime.now(UTC)).total_seconds() - 1
    if wait < 0:
        raise RuntimeError(f"late for the {tick:%H:%M} tick: the previous one took too long")
    time.sleep(wait)
    cpu, waits, loadavg = stack.cpu(), stack.runq_waits(), os.getloadavg()[0]
    backends = stack.backend_cpu("dispatcher")
    query = "SELECT count(*) FROM jobs_job WHERE scheduled_for = %s"
    seen: list[tuple[float, int]] = []  # (seconds after the tick, jobs committed), every 50 ms
    while not seen or seen[-1][1] < count:
        if datetime.now(UTC) > tick + timedelta(seconds=50):
            raise RuntimeError(f"the {tick:%H:%M} tick did not make {count} jobs in 50 s")
        if seen:
            time.sleep(0.05)
        jobs = stack.sql(query, [tick])[0][0]
        seen.append(((datetime.now(UTC) - tick).total_seconds(), jobs))
    committed = seen[-1][0]
    cpu_after, waits_after = stack.cpu(), stack.runq_waits()
    backends = stack.backend_cpu("dispatcher") - backends

    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        def used(name: str) -> float:
            return 1000 * (after[name] - before.get(name, 0.0))

        return {"dispatchers": sum(used(n) for n in names), "postgres": used("postgres")}

    return {
        "tick": tick,
        "committed_ms": 1000 * committed,
        # When this process first saw half and 99 % of the jobs committed (within 50 ms): the
        # tick to the job durably stored, where created_at is stamped before its batch commits.
        "committed_pct_ms": [
            1000 * next(at for at, jobs in seen if jobs >= math.ceil(share * count))
            for share in (0.5, 0.99)
        ],
        # PostgreSQL: the whole server (this process's polling, a worker busy with an earlier
        # tick, autovacuum...) and the sweep's own share, the dispatchers' sessions.
        "cpu": spent(cpu, cpu_after) | {"dispatcher_sessions": 1000 * backends},
        "runq_wait": spent(waits, waits_after),
        "loadavg": loadavg,
    }


def await_started(stack: Stack, count: int, timeout: float = 1200) -> None:
    """Until ``count`` first attempts have started."""
    deadline = time.monotonic() + timeout
    while stack.sql("SELECT count(*) FROM executions_execution WHERE attempt = 1")[0][0] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} jobs did not start in time")
        time.sleep(0.5)


def tick_lags(stack: Stack, tick: datetime) -> dict[str, Any]:
    """One tick's jobs: creation and start lags (ms), how many, and ticks fired twice."""
    rows = stack.sql(
        "SELECT 1000 * extract(epoch FROM j.created_at - j.scheduled_for),"
        " 1000 * extract(epoch FROM e.started_at - j.scheduled_for)"
        " FROM jobs_job j JOIN executions_execution e ON e.job_id = j.id AND e.attempt = 1"
        " WHERE j.scheduled_for = %s",
        [tick],
    )
    [(duplicates,)] = stack.sql(
        "SELECT count(*) - count(DISTINCT schedule_id) FROM jobs_job WHERE scheduled_for = %s",
        [tick],
    )
    return {
        "created": [float(c) for c, _ in rows],
        "started": [float(s) for _, s in rows],
        "jobs": len(rows),
        "duplicates": duplicates,
    }


# --- scale -----------------------------------------------------------------------------------

LIST_QUERIES = [
    "/api/v1/jobs/?page_size=50",
    "/api/v1/jobs/?status=failed&page_size=50",
    "/api/v1/jobs/?queue=default&name=bench-42&page_size=50",
    "/api/v1/jobs/?status=succeeded&created_after=2020-01-01T00:00:00Z&page_size=50",
]


def list_p95(stack: Stack, rounds: int = 50) -> float:
    timings = []
    for _ in range(rounds):
        for query in LIST_QUERIES:
            began = time.perf_counter()
            stack.http.get(query).raise_for_status()
            timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    return percentile(timings, 95)


def release_rate(stack: Stack, count: int) -> float:
    """Jobs per second the dispatcher releases (and publishes) from ``count`` due jobs.

    No worker takes them, so the broker's bound (JOBPLATFORM_DISPATCH_MAX_QUEUED) is lifted:
    with it the dispatcher would stop at 100.
    """
    owner = stack.sql("SELECT id FROM auth_user WHERE username = 'bench'")[0][0]
    stack.sql(FILL_SQL, {"owner": owner, "n": count, "status": "pending"})
    began = time.time()
    stack.overrides = {"JOBPLATFORM_DISPATCH_MAX_QUEUED": "0"}
    stack.start_dispatcher()
    stack.overrides = {}
    try:
        while stack.sql("SELECT 1 FROM jobs_job WHERE status = 'pending' LIMIT 1"):
            time.sleep(0.02)
        [(last,)] = stack.sql("SELECT max(queued_at) FROM jobs_job WHERE status = 'queued'")
    finally:
        stack.stop("dispatcher")
    stack.sql("DELETE FROM jobs_job WHERE status = 'queued'")
    stack.redis.flushdb()
    return count / (last.timestamp() - began)


FILL_SQL = """
INSERT INTO jobs_job (id, owner_id, name, steps, input, queue, priority, max_retries,
    retry_backoff, retry_backoff_max, retry_jitter, timeout, run_at, trace_id, status, attempts,
    next_step, step_outputs, version, created_at, updated_at, retry_base, request_fingerprint,
    finished_at, hold, max_concurrency)
SELECT gen_random_uuid(), %(owner)s, 'bench-' || (i %% 1000),
    '[{"type": "sleep", "params": {"seconds": 0}}]', '{}', 'default', 5, 3, 2, 300, true, 3600,
    now() - interval '1 day', md5(i::text),
    %(status)s::varchar, 1, 1, '[]', 1, now() - (i || ' seconds')::interval, now(), 0, '',
    CASE WHEN %(status)s::varchar = 'pending' THEN NULL ELSE now() END, '', 1
FROM generate_series(1, %(n)s) AS i
"""


def scale(stack: Stack, rows: int, due: int) -> dict[str, float]:
    stack.reset()
    stack.sql("ANALYZE jobs_job")
    empty = {"list_p95_ms": list_p95(stack), "release_per_s": release_rate(stack, due)}
    owner = stack.sql("SELECT id FROM auth_user WHERE username = 'bench'")[0][0]
    stack.sql(FILL_SQL, {"owner": owner, "n": rows, "status": "succeeded"})
    stack.sql("UPDATE jobs_job SET status = 'failed' WHERE random() < 0.01")
    stack.sql("ANALYZE jobs_job")
    full = {"list_p95_ms": list_p95(stack), "release_per_s": release_rate(stack, due)}
    return {
        "empty_list_p95_ms": empty["list_p95_ms"],
        "full_list_p95_ms": full["list_p95_ms"],
        "empty_release_per_s": empty["release_per_s"],
        "full_release_per_s": full["release_per_s"],
    }


# --- memory ----------------------------------------------------------------------------------


def memory(stack: Stack, count: int) -> dict[str, float]:
    stack.reset()
    stack.start_dispatcher()
    stack.start_worker()
    try:
        submit_bulk(stack, 2000)  # warm up: imports, connections, caches
        await_succeeded(stack, 2000)
        before = sum(rss_kib(pid) for pid in stack.pool_pids("worker"))
        submit_bulk(stack, count)
        await_succeeded(stack, 2000 + count)
        after = sum(rss_kib(pid) for pid in stack.pool_pids("worker"))
    finally:
        stack.stop("worker")
        stack.stop("dispatcher")
    return {"rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "growth_pct": 100 * (after - before) / before}  # fmt: skip


# --- fairness and the cost of flow control -----------------------------------------------------


def start_lag_ms(stack: Stack, job_id: str, timeout: float = 1800) -> float:
    """Execution start minus submission commit (``created_at``) of one job, once it started."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stack.sql(
            "SELECT extract(epoch FROM e.started_at - j.created_at) FROM executions_execution e"
            " JOIN jobs_job j ON j.id = e.job_id WHERE j.id = %s AND e.attempt = 1",
            [job_id],
        )
        if rows:
            return float(rows[0][0]) * 1000
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not start")
        time.sleep(0.005)


def fairness_run(stack: Stack, count: int, *, bounded: bool, every: float) -> dict[str, Any]:
    """Client A bulk-submits ``count`` no-op jobs; client B then submits one, and waits for it to
    start. With the broker bounded (the default) B goes on submitting one job every ``every``
    seconds while more than a tenth of A's flood is left, each a sample of the same wait;
    unbounded (the release as it was: every due job into the broker at once), B's first job
    waits behind the whole flood and is the run's only sample."""
    stack.reset()
    stack.overrides = {} if bounded else {"JOBPLATFORM_DISPATCH_MAX_QUEUED": "0"}
    stack.start_dispatcher()
    stack.start_worker()
    lags: list[float] = []
    try:
        began = time.time()
        submit_bulk(stack, count)  # client A
        submitted = time.time() - began
        while True:
            response = stack.http_b.post("/api/v1/jobs/", json={"name": "b", "steps": NOOP})
            response.raise_for_status()
            lags.append(start_lag_ms(stack, response.json()["id"]))
            if not bounded:
                break
            [(left,)] = stack.sql(
                "SELECT count(*) FROM jobs_job WHERE status IN ('pending', 'queued')"
            )
            if left < count // 10:
                break
            time.sleep(every)
        ended = await_succeeded(stack, count + len(lags))
    finally:
        stack.stop("worker")
        stack.stop("dispatcher")
        stack.overrides = {}
    return {"first_ms": lags[0], "lags_ms": lags, "a_submit_s": submitted,
            "a_jobs_per_s": count / (ended - began)}  # fmt: skip


def fairness(stack: Stack, runs: int, count: int, every: float = 0.25) -> dict[str, Any]:
    bounded = [fairness_run(stack, count, bounded=True, every=every) for _ in range(runs)]
    unbounded = [fairness_run(stack, count, bounded=False, every=every) for _ in range(runs)]
    lags = sorted(lag for run in bounded for lag in run["lags_ms"])
    firsts = sorted(run["first_ms"] for run in bounded)
    return {
        "samples": len(lags),
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": lags[-1],
        "first_p50_ms": statistics.median(firsts),
        "first_max_ms": firsts[-1],
        "unbounded_first_ms": statistics.median(run["first_ms"] for run in unbounded),
        "bounded": bounded,
        "unbounded": unbounded,
    }


# Flow control off: no broker bound and no admission caps (the release still runs, with no cap
# set and no key on any job).
FLOW_OFF = {
    "JOBPLATFORM_DISPATCH_MAX_QUEUED": "0",
    "JOBPLATFORM_MAX_UNFINISHED_PER_OWNER": "0",
    "JOBPLATFORM_MAX_UNFINISHED": "0",
}


def configure_flow(stack: Stack) -> None:
    """A cap on the queue, a quota for the client, and a rate limit on every job, that never
    bind (the limit's bucket is taken from and handed back to in Redis at every release)."""
    stack.sql(
        "INSERT INTO jobs_queue (name, paused, max_in_flight, updated_at)"
        " VALUES ('default', false, 1000000, now())"
    )
    stack.sql(
        "INSERT INTO jobs_ownerquota (owner_id, weight, max_unfinished)"
        " SELECT id, 2, 1000000 FROM auth_user WHERE username = 'bench'"
    )
    stack.sql(
        "INSERT INTO jobs_ratelimit (name, rate, burst, updated_at)"
        " VALUES ('bench-api', 1000000, 1000000, now()) ON CONFLICT (name) DO NOTHING"
    )


def keyed(i: int) -> dict[str, Any]:
    """Concurrency keys that never bind: 1,000 keys, each allowed 1,000 at once; and a rate
    limit of a million a second."""
    return {
        "concurrency_key": f"customer:{i % 1000}",
        "max_concurrency": 1000,
        "rate_limit": "bench-api",
    }


FLOW_VARIANTS: dict[str, tuple[dict[str, str], Any, Any]] = {
    "off": (FLOW_OFF, None, None),
    "default": ({}, None, None),
    "configured": ({}, keyed, configure_flow),
}


def flowcost(stack: Stack, runs: int, count: int) -> dict[str, Any]:
    """Throughput with flow control off, at its defaults (the broker bound binds: it is what
    keeps a flood in PostgreSQL), and configured but not binding (a queue cap, a quota, a
    concurrency key on every job), in rounds whose order rotates, since the machine drifts."""
    names = list(FLOW_VARIANTS)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        for round_ in range(runs):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                overrides, extra, prepare = FLOW_VARIANTS[name]
                stack.overrides = overrides
                stack.stop("web")
                stack.start_web()  # admission control runs in the web processes
                samples[name].append(platform_throughput(stack, count, extra, prepare))
    finally:
        stack.overrides = {}
        stack.stop("web")
        stack.start_web()
    rounds = range(runs)

    def ratios(name: str) -> list[float]:
        return [samples[name][r]["jobs_per_s"] / samples["off"][r]["jobs_per_s"] for r in rounds]

    return {
        **{name: medians(samples[name]) for name in names},
        "default_ratio": statistics.median(ratios("default")),
        "default_ratios": ratios("default"),
        "configured_ratio": statistics.median(ratios("configured")),
        "configured_ratios": ratios("configured"),
    }


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--purge-rows", type=int, default=0,
        help="throughput: old finished jobs the retention purge deletes during each platform run",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run")
    parser.add_argument(
        "--batch-max",
        type=int,
        default=16,
        help="JOBPLATFORM_BATCH_MAX of the batched throughput runs, and bare Celery's chunk size",
    )
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-jobs", type=int, default=50_000)
    parser.add_argument("--schedule-jobs", type=int, default=1000, help="jobs per schedule run")
    parser.add_argument(
        "--schedule-spread", type=float, default=60.0, help="seconds their run_at spread over"
    )
    parser.add_argument(
        "--auth",
        choices=["token", "api-key", "jwt"],
        default="token",
        help="the credential of the single submissions (docs/security.md)",
    )
    parser.add_argument(
        "--fairness-jobs", type=int, default=20_000, help="client A's flood per fairness run"
    )
    parser.add_argument(
        "--schedules",
        default="10000,500,100",
        help="schedules scenario: comma list of schedule counts, each run for two ticks",
    )
    parser.add_argument(
        "--schedule-dispatchers",
        type=int,
        default=1,
        help="schedules scenario: dispatchers sweeping at once",
    )
    parser.add_argument("--io-jobs", type=int, default=2000, help="jobs per I/O-bound run")
    parser.add_argument(
        "--io-concurrency",
        type=int,
        default=32,
        help="I/O-bound scenario: threads of the platform's worker and of bare Celery's",
    )
    parser.add_argument(
        "--mixed-slow", type=int, default=50,
        help="mixed scenario: sleep jobs submitted first (issue #17: 200)",
    )  # fmt: skip
    parser.add_argument(
        "--mixed-slow-seconds", type=float, default=2.0, help="mixed scenario: each one's sleep"
    )
    parser.add_argument(
        "--mixed-fast", type=int, default=5000, help="mixed scenario: no-op jobs arriving"
    )
    parser.add_argument(
        "--mixed-rate", type=float, default=100.0,
        help="mixed scenario: no-op jobs arriving per second (bulk requests every 0.1 s)",
    )  # fmt: skip
    parser.add_argument(
        "--only",
        default="throughput,submission,latency,schedule,schedules,scale,memory,fairness,flowcost",
        help="comma list",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    stack = Stack()
    results: dict[str, Any] = {"args": vars(args), "started": datetime.now(UTC).isoformat()}
    stack.up(auth=args.auth)
    stack.start_web()
    try:
        if "throughput" in only:
            results["throughput"] = throughput(
                stack, args.runs, args.jobs, args.batch_max, args.purge_rows
            )
        if "submission" in only:
            results["submission"] = {
                "single": median_of(args.runs, lambda: single_submissions(stack, 2000)),
                "bulk": median_of(args.runs, lambda: bulk_submissions(stack, args.jobs)),
            }
        if "latency" in only:
            results["latency"] = median_of(args.runs, lambda: latency(stack, 200))
        if "schedule" in only:
            results["schedule"] = median_of(
                args.runs, lambda: schedule_lag(stack, args.schedule_jobs, args.schedule_spread)
            )
        if "schedules" in only:
            results["schedules"] = {}
            for count in map(int, args.schedules.split(",")):
                runs = [
                    schedules_on_time(stack, count, args.schedule_dispatchers)
                    for _ in range(args.runs)
                ]
                results["schedules"][count] = medians(runs)
        if "scale" in only:
            results["scale"] = scale(stack, args.scale_rows, due=20_000)
        if "memory" in only:
            results["memory"] = memory(stack, args.memory_jobs)
        if "fairness" in only:
            results["fairness"] = fairness(stack, args.runs, args.fairness_jobs)
        if "flowcost" in only:
            results["flowcost"] = flowcost(stack, args.runs, args.jobs)
        if "iobound" in only:
            results["iobound"] = iobound(
                stack, args.runs, args.io_jobs, args.io_concurrency, args.batch_max
            )
        if "mixed" in only:
            results["mixed"] = mixed(
                stack, args.runs, slow=args.mixed_slow, seconds=args.mixed_slow_seconds,
                fast=args.mixed_fast, rate=args.mixed_rate,
            )  # fmt: skip
    finally:
        stack.down()
        # What finished is written even when a later scenario fails (a long run is not lost).
        if set(results) - {"args", "started"}:
            report(results)


def report(results: dict[str, Any]) -> None:
    rows = []
    if "throughput" in results:
        t = results["throughput"]
        k = t["batch_max"]
        rows += [
            (f"throughput, platform, batches of <= {k} (jobs/s)",
             t["platform"]["jobs_per_s"], ""),
            ("throughput, platform, 1 job per message (jobs/s)",
             t["platform_k1"]["jobs_per_s"], ""),
            ("throughput, bare Celery (tasks/s)", t["baseline"]["jobs_per_s"], ""),
            (f"throughput, bare Celery chunks of {k} (tasks/s)",
             t["baseline_chunks"]["jobs_per_s"], ""),
            ("ratio platform batches / bare, median of rounds", t["platform_ratio"], ">= 1.0"),
            ("ratio platform k=1 / bare, median of rounds", t["platform_k1_ratio"], ">= 0.6"),
            ("ratio bare chunks / bare, median of rounds", t["baseline_chunks_ratio"], ""),
            ("CPU per job, platform batches (ms)", t["platform"]["cpu_ms_per_job"], ""),
            ("CPU per job, platform k=1 (ms)", t["platform_k1"]["cpu_ms_per_job"], ""),
            ("CPU per task, bare Celery (ms)", t["baseline"]["cpu_ms_per_job"], ""),
            ("CPU per task, bare Celery chunks (ms)", t["baseline_chunks"]["cpu_ms_per_job"], ""),
            ("run-queue wait per job, platform batches (ms)",
             t["platform"]["runq_wait_ms_per_job"], ""),
            ("run-queue wait per job, platform k=1 (ms)",
             t["platform_k1"]["runq_wait_ms_per_job"], ""),
            ("run-queue wait per task, bare (ms)", t["baseline"]["runq_wait_ms_per_job"], ""),
            ("run-queue wait per task, bare chunks (ms)",
             t["baseline_chunks"]["runq_wait_ms_per_job"], ""),
        ]  # fmt: skip
    if "submission" in results:
        rows.append(
            ("single submissions (jobs/s)", results["submission"]["single"]["jobs_per_s"], ">= 300")
        )
        rows.append(
            ("bulk submissions (jobs/s)", results["submission"]["bulk"]["jobs_per_s"], ">= 5000")
        )
    if "latency" in results:
        rows.append(("latency p50 (ms)", results["latency"]["p50_ms"], "<= 10"))
        rows.append(("latency p99 (ms)", results["latency"]["p99_ms"], "<= 50"))
    if "schedule" in results:
        lag = results["schedule"]
        rows.append(("start lag at run_at, p50 (ms)", lag["p50_ms"], "<= 20"))
        rows.append(("start lag at run_at, p99 (ms)", lag["p99_ms"], "<= 100"))
        rows.append(("start lag at run_at, max (ms)", lag["max_ms"], ""))
        rows.append(("jobs started before run_at", lag["early"], "0"))
    for count, r in results.get("schedules", {}).items():
        at = f"{count:,} schedules" + (f", {n} dispatchers" if (n := r["dispatchers"]) > 1 else "")
        target = "<= 1000" if count == 10_000 else ""
        rows += [
            (f"{at}: created after the tick p50 (ms)", r["created_p50_ms"], ""),
            (f"{at}: created after the tick p99 (ms)", r["created_p99_ms"], target),
            (f"{at}: created after the tick max (ms)", r["created_max_ms"], ""),
            (f"{at}: half committed after the tick (ms)", r["committed_p50_ms"], ""),
            (f"{at}: 99 % committed after the tick (ms)", r["committed_p99_ms"], ""),
            (f"{at}: all committed after the tick (ms)", r["committed_max_ms"], ""),
            (f"{at}: started after the tick p50 (ms)", r["started_p50_ms"], ""),
            (f"{at}: started after the tick p99 (ms)", r["started_p99_ms"], "<= 2000 (idle)"),
            (f"{at}: started after the tick max (ms)", r["started_max_ms"], ""),
            (f"{at}: bare Celery, {count:,} tasks published at once: published in (ms)",
             r["bare_published_ms"], ""),
            (f"{at}: bare Celery, started after the publishing began p50 (ms)",
             r["bare_started_p50_ms"], ""),
            (f"{at}: bare Celery, started after the publishing began p99 (ms)",
             r["bare_started_p99_ms"], "the start target's bound"),
            (f"{at}: jobs per tick, fewest", r["jobs_per_tick_min"], f"= {count}"),
            (f"{at}: ticks fired twice", r["duplicates"], "0"),
            (f"{at}: sweep per tick, dispatcher CPU (ms)", r["sweep_cpu_ms"], ""),
            (f"{at}: until committed, dispatcher CPU (ms)", r["dispatchers_cpu_ms"], ""),
            (f"{at}: until committed, PostgreSQL CPU (ms)", r["postgres_cpu_ms"], ""),
            (f"{at}: ... of it the dispatchers' sessions (ms)", r["sessions_cpu_ms"], ""),
            (f"{at}: until committed, waits for a core (ms)",
             r["dispatchers_runq_wait_ms"] + r["postgres_runq_wait_ms"], ""),
            (f"{at}: load average at the tick", r["loadavg"], ""),
        ]  # fmt: skip
    if "scale" in results:
        s = results["scale"]
        rows.append(("list/filter p95, empty table (ms)", s["empty_list_p95_ms"], ""))
        rows.append(("list/filter p95, 1M jobs (ms)", s["full_list_p95_ms"], "<= 50, <= 2x empty"))
        rows.append(("release rate, empty table (jobs/s)", s["empty_release_per_s"], ""))
        rows.append(("release rate, 1M jobs (jobs/s)", s["full_release_per_s"], ">= 0.5 x empty"))
    if "memory" in results:
        m = results["memory"]
        rows.append(("worker RSS before (MiB)", m["rss_before_mib"], ""))
        rows.append(("worker RSS after (MiB)", m["rss_after_mib"], ""))
        rows.append(("worker RSS growth (%)", m["growth_pct"], "< 10"))
    if "fairness" in results:
        f = results["fairness"]
        rows.append(("B's start lag behind a flood, p50 (ms)", f["p50_ms"], ""))
        rows.append(("B's start lag behind a flood, p99 (ms)", f["p99_ms"], "<= 1000"))
        rows.append(("B's start lag, first job of a run, max (ms)", f["first_max_ms"], ""))
        rows.append(("B's start lag, broker unbounded (ms)", f["unbounded_first_ms"], ""))
    if "flowcost" in results:
        c = results["flowcost"]
        for name in FLOW_VARIANTS:
            rows.append((f"throughput, flow control {name} (jobs/s)", c[name]["jobs_per_s"], ""))
        rows.append(("ratio defaults / off, median of rounds", c["default_ratio"], ">= 0.9"))
        rows.append(("ratio configured / off, median of rounds", c["configured_ratio"], ">= 0.9"))
    if "iobound" in results:
        io = results["iobound"]
        at = f"I/O-bound, threads -c {io['concurrency']}"
        rows += [
            (f"{at}, platform, batches of <= {io['batch_max']} (jobs/s)",
             io["platform"]["jobs_per_s"], ""),
            (f"{at}, platform, 1 job per message (jobs/s)", io["platform_k1"]["jobs_per_s"], ""),
            (f"{at}, bare Celery (tasks/s)", io["baseline"]["jobs_per_s"], ""),
            (f"{at}, at best (threads / delay)", io["ideal_jobs_per_s"], ""),
            (f"{at}, ratio platform batches / bare", io["platform_ratio"], ">= 0.7"),
            (f"{at}, ratio platform k=1 / bare", io["platform_k1_ratio"], ">= 0.7"),
            (f"{at}, CPU per job, platform batches (ms)", io["platform"]["cpu_ms_per_job"], ""),
            (f"{at}, CPU per job, platform k=1 (ms)", io["platform_k1"]["cpu_ms_per_job"], ""),
            (f"{at}, CPU per task, bare Celery (ms)", io["baseline"]["cpu_ms_per_job"], ""),
        ]  # fmt: skip
    if "mixed" in results:
        m = results["mixed"]
        at = f"mixed, {m['fast']:,} no-ops behind {m['slow']} sleeps of {m['seconds']:g} s"
        for name, label in (("shared", "one shared queue"), ("split", "a queue per kind")):
            r = m[name]
            rows += [
                (f"{at}, {label}: no-op start lag p50 (ms)", r["noop_lag_p50_ms"], ""),
                (f"{at}, {label}: no-op start lag p99 (ms)", r["noop_lag_p99_ms"], ""),
                (f"{at}, {label}: no-op start lag max (ms)", r["noop_lag_max_ms"], ""),
                (f"{at}, {label}: sleeps done after (s)", r["slow_done_s"], ""),
                (f"{at}, {label}: no-ops arriving (jobs/s)", r["arrival_per_s"], ""),
            ]
        rows += [
            (f"{at}: sleeps done after, at best (s)", m["slow_ideal_s"], ""),
            (f"{at}: ratio no-op p99 shared / per kind", m["p99_ratio"], ""),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'scenario':<{width}}  {'median':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10.2f}  {target}")
    out = REPO / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
