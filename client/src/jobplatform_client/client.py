"""The client: a thin layer over httpx that speaks the jobplatform REST API (docs/api.md).

```python
from jobplatform_client import Client

with Client("http://127.0.0.1:8000", token="...") as jp:
    job = jp.jobs.submit(name="hello", steps=[{"type": "log", "params": {"message": "hi"}}])
    job = jp.jobs.wait(job.id, timeout=60)
```
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from jobplatform_client import __version__
from jobplatform_client.errors import ApiError, TransportError, WaitTimeout
from jobplatform_client.models import (
    BulkOutcome,
    BulkSubmission,
    CallbackDelivery,
    DeadLetter,
    DeadLetterGroup,
    Execution,
    Health,
    Job,
    Page,
    Schedule,
    ScheduleTrigger,
    StepType,
    page_of,
)
from jobplatform_client.retry import NO_RETRY, RetryPolicy, parse_retry_after

logger = logging.getLogger("jobplatform_client")

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1/"
# Answers that say the request was refused before anything was done, whatever the request:
# throttling runs before the view, and admission control refuses a submission before storing it.
# Any request may be sent again after one of these.
REFUSED_UNDONE = frozenset({429})


def _root(url: str) -> str:
    """The server's root URL, whether given as ``http://host:8000`` or ``.../api/v1/``."""
    url = url.rstrip("/")
    if url.endswith(API_PREFIX.rstrip("/")):
        url = url[: -len(API_PREFIX.rstrip("/"))]
    return url


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def _query(filters: Mapping[str, Any]) -> dict[str, str]:
    """List filters as query parameters: a list is the API's comma form (``status=a,b``), a
    datetime ISO 8601; ``None`` leaves the filter out. Names are passed through as given, so a
    filter the server added after this package works too."""
    return {name: _query_value(v) for name, v in filters.items() if v is not None}


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left at ``None`` (the server's defaults apply)."""
    return {name: _json_value(v) for name, v in fields.items() if v is not None}


class Client:
    """A connection to one jobplatform API, with its credentials.

    Arguments left out come from the environment: ``JOBPLATFORM_URL`` (default
    ``http://127.0.0.1:8000``), ``JOBPLATFORM_API_KEY`` or else ``JOBPLATFORM_TOKEN``, and
    ``JOBPLATFORM_AUTH_SCHEME``. The header sent is ``Authorization: <scheme> <credential>``: the
    scheme is ``Token`` for a token and ``Api-Key`` for an API key unless ``auth_scheme`` (e.g.
    ``Bearer`` for a JWT) says otherwise.

    Retries (``retry``, a :class:`RetryPolicy`): a 429 is retried for any request, since the API
    refuses it before doing anything. A 503 or a broken connection is retried only for requests
    that are safe to repeat: reads, deletes, the API's idempotent actions (cancel, pause,
    resume), and submissions, which always carry an idempotency key. A connection that could not
    be opened (nothing was sent) is retried for any request. Everything else raises at once.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        api_key: str | None = None,
        auth_scheme: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if token and api_key:
            raise ValueError("give a token or an API key, not both")
        if not token and not api_key:
            api_key = os.environ.get("JOBPLATFORM_API_KEY") or None
            token = None if api_key else os.environ.get("JOBPLATFORM_TOKEN") or None
        scheme = auth_scheme or os.environ.get("JOBPLATFORM_AUTH_SCHEME") or None
        self.url = _root(url or os.environ.get("JOBPLATFORM_URL") or DEFAULT_URL)
        self.retry = retry or RetryPolicy()
        all_headers = {
            "Accept": "application/json",
            "User-Agent": f"jobplatform-client/{__version__} httpx/{httpx.__version__}",
            **(headers or {}),
        }
        if api_key:
            all_headers["Authorization"] = f"{scheme or 'Api-Key'} {api_key}"
        elif token:
            all_headers["Authorization"] = f"{scheme or 'Token'} {token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers=all_headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self.jobs = Jobs(self)
        self.dead_letters = DeadLetters(self)
        self.schedules = Schedules(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # --- the wire -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        safe_to_repeat: bool | None = None,
        accept: Sequence[int] = (),
    ) -> Any:
        """Send a request to ``path`` (relative to ``/api/v1/``) and return the JSON answer
        (``None`` for an empty one). For endpoints this package has no method for yet.

        ``safe_to_repeat`` says whether a 503 or a broken connection may be retried; by default
        a GET, HEAD, OPTIONS or DELETE may. ``accept``: error statuses to return rather than
        raise. Raises :class:`ApiError` for any other error answer, :class:`TransportError` when
        the API cannot be reached.
        """
        if safe_to_repeat is None:
            safe_to_repeat = method.upper() in ("GET", "HEAD", "OPTIONS", "DELETE")
        response = self._send(
            method,
            path,
            json=json,
            params=params,
            headers=headers,
            policy=self.retry,
            safe_to_repeat=safe_to_repeat,
            accept=accept,
        )
        return response.json() if response.content else None

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        policy: RetryPolicy,
        safe_to_repeat: bool,
        accept: Sequence[int],
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params=_query(params) if params else None,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                # A connection that was never opened carried nothing: any request may go again.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                delay = (
                    policy.delay(attempt=attempt, retry_after=None)
                    if unsent or safe_to_repeat
                    else None
                )
                if delay is None:
                    raise TransportError(
                        f"{method} {self.url}{API_PREFIX}{path}: {type(exc).__name__}: {exc}",
                        method=method,
                        url=f"{self.url}{API_PREFIX}{path}",
                    ) from exc
                logger.info("%s %s: %s, again in %.2fs", method, path, type(exc).__name__, delay)
                time.sleep(delay)
                continue
            if response.is_success or response.status_code in accept:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            status = response.status_code
            delay = None
            if status in policy.statuses and (safe_to_repeat or status in REFUSED_UNDONE):
                delay = policy.delay(attempt=attempt, retry_after=retry_after)
            if delay is None:
                raise ApiError.from_response(response, retry_after)
            logger.info("%s %s: %s, again in %.2fs", method, path, status, delay)
            time.sleep(delay)

    def _pages(
        self, path: str, params: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]
    ) -> Iterator[T]:
        """Every item of a cursor-paginated list, following ``next`` until it is null."""
        page = page_of(self.request("GET", path, params=params), parse)
        while True:
            yield from page.results
            if not page.next:
                return
            page = page_of(self.request("GET", self._relative(page.next)), parse)

    def _relative(self, link: str) -> str:
        """An API link as a path under ``/api/v1/`` of *this* client's URL.

        The API builds its links from the Host of the request it answered; behind a proxy that
        can be another scheme or host than the one this client was given (and the credentials
        must not go elsewhere), so only the part after ``/api/v1/`` is kept.
        """
        parts = urlsplit(link)
        path = parts.path
        at = path.find(API_PREFIX)
        if at < 0:
            raise ValueError(f"not a link of this API: {link}")
        return path[at + len(API_PREFIX) :] + (f"?{parts.query}" if parts.query else "")

    # --- the service ----------------------------------------------------------------------------

    def steps(self) -> tuple[StepType, ...]:
        """The step types a job may use, with the JSON Schema of their parameters."""
        data = self.request("GET", "steps/")
        return tuple(StepType.from_api(s) for s in data.get("results", ()))

    def health(self) -> Health:
        """PostgreSQL and the broker as the API sees them. A degraded platform answers 503 with
        the same shape: returned, not raised, and not retried."""
        response = self._send(
            "GET",
            "health/",
            json=None,
            params=None,
            headers=None,
            policy=NO_RETRY,
            safe_to_repeat=True,
            accept=(503,),
        )
        return Health.from_api(response.json())


class Jobs:
    """``client.jobs``: submit, read, list, cancel, move and wait for jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        *,
        name: str,
        steps: Sequence[Mapping[str, Any]],
        input: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_backoff_max: float | None = None,
        retry_jitter: bool | None = None,
        timeout: int | None = None,
        run_at: datetime | str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> Job:
        """Submit a job; the answer is the job as stored (``pending``).

        A submission always carries an idempotency key: ``idempotency_key``, or a new random one.
        So a submission retried after a lost answer or a 503 makes one job, not two; send the same
        key again yourself to make a submission idempotent across processes. Fields left at
        ``None`` take the server's defaults; ``fields`` passes on fields this method does not
        name (ones the API added later).
        """
        body = _body(
            name=name,
            steps=[dict(s) for s in steps],
            input=input,
            queue=queue,
            priority=priority,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter,
            timeout=timeout,
            run_at=run_at,
            callback_url=callback_url,
        )
        return self.submit_body({**body, **fields}, idempotency_key=idempotency_key)

    def submit_body(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a job given as the API's JSON object (as read from a file, say). The key is
        ``idempotency_key``, else the body's ``idempotency_key``, else a new random one."""
        headers = {}
        if idempotency_key is not None or "idempotency_key" not in body:
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        data = self._client.request(
            "POST", "jobs/", json=dict(body), headers=headers, safe_to_repeat=True
        )
        return Job.from_api(data)

    def submit_many(
        self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BulkSubmission:
        """Submit up to 1,000 jobs at once, all or none; the ids come back in the same order.

        The batch carries an idempotency key (``idempotency_key``, or a new random one), so after
        a 503 or a broken connection it is sent again safely: the API answers the jobs it stored.
        """
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        data = self._client.request(
            "POST",
            "jobs/bulk/",
            json={"jobs": [dict(j) for j in jobs]},
            headers=headers,
            safe_to_repeat=True,
        )
        return BulkSubmission.from_api(data)

    def get(self, job_id: str) -> Job:
        """A job with every attempt and each attempt's steps."""
        return Job.from_api(self._client.request("GET", f"jobs/{job_id}/"))

    def list(
        self, *, page_size: int | None = None, cursor: str | None = None, **filters: Any
    ) -> Page[Job]:
        """One page of your jobs (staff: all), newest first. ``filters`` are the API's list
        filters: ``status`` (a string or a list), ``queue``, ``name``, ``name_contains``,
        ``created_after``, ``created_before``, ``schedule``, and any the server adds.
        ``cursor`` is a ``next``/``previous`` link of an earlier page."""
        if cursor:
            return page_of(
                self._client.request("GET", self._client._relative(cursor)), Job.from_api
            )
        params = {**filters, "page_size": page_size}
        return page_of(self._client.request("GET", "jobs/", params=params), Job.from_api)

    def iter(self, *, page_size: int | None = None, **filters: Any) -> Iterator[Job]:
        """Every job matching ``filters`` (as :meth:`list`), newest first, page after page."""
        return self._client._pages("jobs/", {**filters, "page_size": page_size}, Job.from_api)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not ended; cancelling a cancelled job again is a no-op.
        A job that succeeded or failed raises ``ApiError`` ``JOBS.NOT_CANCELLABLE`` (409)."""
        data = self._client.request("POST", f"jobs/{job_id}/cancel/", safe_to_repeat=True)
        return Job.from_api(data)

    def retry(
        self,
        job_id: str,
        *,
        note: str = "",
        max_retries: int | None = None,
        input: Any = None,
        from_step: int | None = None,
    ) -> Job:
        """Send a ``failed`` or ``cancelled`` job back to the queue (its open dead letter is
        retried with it), optionally with a new retry budget, a replaced input or from an
        earlier step. Not repeated on a 503: a second retry is a 409 ``JOBS.NOT_RETRYABLE``."""
        body = _body(note=note, max_retries=max_retries, input=input, from_step=from_step)
        data = self._client.request(
            "POST", f"jobs/{job_id}/retry/", json=body, safe_to_repeat=False
        )
        return Job.from_api(data)

    def executions(self, job_id: str) -> tuple[Execution, ...]:
        """A job's attempts, oldest first, each with its step results."""
        data = self._client.request("GET", f"jobs/{job_id}/executions/")
        return tuple(Execution.from_api(e) for e in data.get("results", ()))

    def callbacks(self, job_id: str) -> tuple[CallbackDelivery, ...]:
        """A job's completion callback attempts, oldest first."""
        data = self._client.request("GET", f"jobs/{job_id}/callbacks/")
        return tuple(CallbackDelivery.from_api(d) for d in data.get("results", ()))

    def callback_key(self) -> str:
        """The key your jobs' completion callbacks are signed with (:func:`verify_callback`)."""
        data = self._client.request("GET", "callbacks/key/")
        return str(data["key"])

    def stats(self, **filters: Any) -> dict[str, Any]:
        """The visible jobs (narrowed by the list's ``filters``) counted by status and queue,
        the oldest due job's wait, and the last hour's throughput and failure rate."""
        data: dict[str, Any] = self._client.request("GET", "jobs/stats/", params=filters)
        return data

    def reschedule(self, job_id: str, run_at: datetime | str) -> Job:
        """Move a ``pending`` job to another ``run_at`` (``JOBS.NOT_PENDING`` once released)."""
        data = self._client.request("PATCH", f"jobs/{job_id}/", json=_body(run_at=run_at))
        return Job.from_api(data)

    def follow(
        self,
        job_id: str,
        *,
        interval: float = 0.25,
        max_interval: float = 2.0,
        timeout: float | None = None,
        changes_only: bool = True,
    ) -> Iterator[Job]:
        """The job as it moves, until it ends: the first snapshot, then each one that differs
        from the one before (every snapshot if not ``changes_only``), the last one terminal.

        Polls the detail: every ``interval`` seconds after a change, slowing down by half each
        quiet poll up to ``max_interval``. Raises :class:`WaitTimeout` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, previous = interval, None
        while True:
            job = self.get(job_id)
            changed = previous is None or job.raw != previous.raw
            if changed or not changes_only:
                yield job
            if job.is_terminal:
                return
            delay = interval if changed else min(max_interval, delay * 1.5)
            previous = job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(job, timeout or 0.0)
                delay = min(delay, left)
            time.sleep(delay)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        interval: float = 0.25,
        max_interval: float = 2.0,
    ) -> Job:
        """The job once it has ended (``succeeded``, ``failed`` or ``cancelled``). Raises
        :class:`WaitTimeout`, carrying the job as last seen, after ``timeout`` seconds."""
        snapshots = self.follow(
            job_id, interval=interval, max_interval=max_interval, timeout=timeout
        )
        return deque(snapshots, maxlen=1)[0]  # follow yields at least once: the last is terminal


class DeadLetters:
    """``client.dead_letters``: the failed jobs' entries: list, read, retry, dismiss."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self, *, page_size: int | None = None, cursor: str | None = None, **filters: Any
    ) -> Page[DeadLetter]:
        """One page of the dead letters of your jobs (staff: all), newest first. ``filters``:
        ``state``, ``reason`` (strings or lists), ``queue``, ``error_type``, ``error_code``,
        ``step_type``, ``owner``, ``job``, ``fingerprint``, ``message_contains``,
        ``created_after``, ``created_before``."""
        if cursor:
            data = self._client.request("GET", self._client._relative(cursor))
        else:
            params = {**filters, "page_size": page_size}
            data = self._client.request("GET", "dead-letters/", params=params)
        return page_of(data, DeadLetter.from_api)

    def iter(self, *, page_size: int | None = None, **filters: Any) -> Iterator[DeadLetter]:
        """Every dead letter matching ``filters``, newest first, page after page."""
        params = {**filters, "page_size": page_size}
        return self._client._pages("dead-letters/", params, DeadLetter.from_api)

    def get(self, dead_letter_id: int) -> DeadLetter:
        """An entry with its full error, audit trail and the job's every attempt."""
        return DeadLetter.from_api(self._client.request("GET", f"dead-letters/{dead_letter_id}/"))

    def retry(
        self,
        dead_letter_id: int,
        *,
        note: str = "",
        max_retries: int | None = None,
        input: Any = None,
        from_step: int | None = None,
    ) -> DeadLetter:
        """Send the job back to the queue, optionally with a new retry budget, a replaced input
        or from an earlier step. Not repeated on a 503: a second retry is a 409."""
        body = _body(note=note, max_retries=max_retries, input=input, from_step=from_step)
        data = self._client.request(
            "POST", f"dead-letters/{dead_letter_id}/retry/", json=body, safe_to_repeat=False
        )
        return DeadLetter.from_api(data)

    def dismiss(self, dead_letter_id: int, *, note: str = "") -> DeadLetter:
        """Close the entry without running the job again."""
        data = self._client.request(
            "POST", f"dead-letters/{dead_letter_id}/dismiss/", json={"note": note}
        )
        return DeadLetter.from_api(data)

    def retry_many(
        self,
        *,
        ids: Sequence[int] | None = None,
        group: str | None = None,
        filter: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> BulkOutcome:
        """Retry many entries, chosen by exactly one of ``ids``, ``group`` (a fingerprint) or
        ``filter`` (the list filters; open entries unless it names a ``state``)."""
        return self._bulk("retry", ids=ids, group=group, filter=filter, note=note)

    def dismiss_many(
        self,
        *,
        ids: Sequence[int] | None = None,
        group: str | None = None,
        filter: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> BulkOutcome:
        """Dismiss many entries, chosen as for :meth:`retry_many`."""
        return self._bulk("dismiss", ids=ids, group=group, filter=filter, note=note)

    def _bulk(
        self,
        action: str,
        *,
        ids: Sequence[int] | None,
        group: str | None,
        filter: Mapping[str, Any] | None,
        note: str,
    ) -> BulkOutcome:
        body = _body(
            ids=None if ids is None else [int(i) for i in ids],
            group=group,
            filter=None if filter is None else dict(filter),
            note=note,
        )
        data = self._client.request(
            "POST", f"dead-letters/{action}/", json=body, safe_to_repeat=False
        )
        return BulkOutcome.from_api(data)

    def groups(self, *, limit: int | None = None, **filters: Any) -> tuple[DeadLetterGroup, ...]:
        """Entries grouped by fingerprint, largest group first (open ones unless ``state``)."""
        data = self._client.request(
            "GET", "dead-letters/groups/", params={**filters, "limit": limit}
        )
        return tuple(DeadLetterGroup.from_api(g) for g in data.get("results", ()))

    def stats(self) -> dict[str, Any]:
        """Open entries counted by reason, by queue and by both."""
        data: dict[str, Any] = self._client.request("GET", "dead-letters/stats/")
        return data


class Schedules:
    """``client.schedules``: recurring cron schedules (docs/schedules.md)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, page_size: int | None = None, cursor: str | None = None) -> Page[Schedule]:
        """One page of your schedules (staff: all), newest first."""
        if cursor:
            data = self._client.request("GET", self._client._relative(cursor))
        else:
            data = self._client.request("GET", "schedules/", params={"page_size": page_size})
        return page_of(data, Schedule.from_api)

    def iter(self, *, page_size: int | None = None) -> Iterator[Schedule]:
        """Every schedule, newest first, page after page."""
        return self._client._pages("schedules/", {"page_size": page_size}, Schedule.from_api)

    def get(self, schedule_id: str) -> Schedule:
        """A schedule with its next fire times, recent jobs and recent firings."""
        return Schedule.from_api(self._client.request("GET", f"schedules/{schedule_id}/"))

    def create(
        self,
        *,
        name: str,
        cron: str,
        job: Mapping[str, Any],
        timezone: str | None = None,
        overlap: str | None = None,
        misfire: str | None = None,
        jitter: int | None = None,
        enabled: bool | None = None,
        **fields: Any,
    ) -> Schedule:
        """Create a schedule: ``job`` is a job submission without ``run_at``; ``fields`` takes
        the other fields of docs/schedules.md (``misfire_window``, ``start_at``, ...)."""
        body = _body(
            name=name,
            cron=cron,
            job=dict(job),
            timezone=timezone,
            overlap=overlap,
            misfire=misfire,
            jitter=jitter,
            enabled=enabled,
        )
        return self.create_body({**body, **{k: _json_value(v) for k, v in fields.items()}})

    def create_body(self, body: Mapping[str, Any]) -> Schedule:
        """Create a schedule given as the API's JSON object. Not repeated on a 503."""
        data = self._client.request("POST", "schedules/", json=dict(body), safe_to_repeat=False)
        return Schedule.from_api(data)

    def update(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change any fields (``cron="0 6 * * 1-5"``, ``enabled=False``, ...)."""
        body = {k: _json_value(v) for k, v in changes.items()}
        return Schedule.from_api(
            self._client.request("PATCH", f"schedules/{schedule_id}/", json=body)
        )

    def delete(self, schedule_id: str) -> None:
        """Delete a schedule; the jobs it made stay."""
        self._client.request("DELETE", f"schedules/{schedule_id}/")

    def pause(self, schedule_id: str, *, note: str = "") -> Schedule:
        """Stop firing until resumed; pausing a paused schedule is a no-op."""
        body = {"note": note} if note else None
        data = self._client.request(
            "POST", f"schedules/{schedule_id}/pause/", json=body, safe_to_repeat=True
        )
        return Schedule.from_api(data)

    def resume(self, schedule_id: str) -> Schedule:
        """Fire again from the next tick; resuming a running schedule is a no-op."""
        data = self._client.request("POST", f"schedules/{schedule_id}/resume/", safe_to_repeat=True)
        return Schedule.from_api(data)

    def trigger(self, schedule_id: str) -> ScheduleTrigger:
        """Fire now under the overlap policy: ``created`` with the job, or ``buffered``; a tick
        the policy skips raises ``ApiError`` ``SCHEDULES.OVERLAP_SKIPPED`` (409)."""
        data = self._client.request(
            "POST", f"schedules/{schedule_id}/trigger/", safe_to_repeat=False
        )
        return ScheduleTrigger.from_api(data)
