"""The built-in steps: sleep, log, compute, http, fail."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from jobs.steps.errors import PermanentStepError, StepStopped, TransientStepError
from jobs.steps.registry import StepContext, step

logger = logging.getLogger("jobplatform.steps")

MAX_SLEEP_SECONDS = 3600
MAX_COMPUTE_SIZE = 20_000_000
MAX_HTTP_BODY_CHARS = 65536


@step(
    "sleep",
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP_SECONDS}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
)
def sleep_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Wait for a number of seconds (stops early if the job is cancelled)."""
    if ctx.stop.wait(params["seconds"]):
        raise StepStopped("the job was cancelled while sleeping")
    return {"slept": params["seconds"]}


@step(
    "log",
    schema={
        "type": "object",
        "properties": {
            "message": {"type": "string", "maxLength": 4096},
            "level": {"enum": ["debug", "info", "warning", "error"], "default": "info"},
        },
        "required": ["message"],
        "additionalProperties": False,
    },
)
def log_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Write a message to the worker's log, tagged with the job and attempt."""
    level = params.get("level", "info")
    logger.log(
        logging.getLevelName(level.upper()),
        "%s",
        params["message"],
        extra={"job_id": str(ctx.job_id), "attempt": ctx.attempt, "step_index": ctx.step_index},
    )
    return {"message": params["message"], "level": level}


@step(
    "compute",
    schema={
        "type": "object",
        "properties": {"size": {"type": "integer", "minimum": 2, "maximum": MAX_COMPUTE_SIZE}},
        "required": ["size"],
        "additionalProperties": False,
    },
)
def compute_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Count the primes below ``size`` with a sieve of Eratosthenes (CPU-bound, O(n log log n))."""
    size = params["size"]
    sieve = bytearray([1]) * size
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(size**0.5) + 1):
        if n % 64 == 0 and ctx.stop.is_set():
            raise StepStopped("the job was cancelled while computing")
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, size, n)))
    return {"size": size, "primes": sum(sieve)}


@step(
    "fail",
    schema={
        "type": "object",
        "properties": {
            "mode": {"enum": ["transient", "permanent"], "default": "transient"},
            "message": {"type": "string", "maxLength": 1024},
            "times": {
                "type": "integer",
                "minimum": 1,
                "description": "fail only on the first `times` attempts; always when absent",
            },
        },
        "additionalProperties": False,
    },
)
def fail_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Fail on purpose, transiently or permanently, optionally only on the first k attempts."""
    times = params.get("times")
    if times is not None and ctx.attempt > times:
        return {"failed": False, "attempt": ctx.attempt}
    message = params.get("message") or f"fail step, attempt {ctx.attempt}"
    if params.get("mode", "transient") == "permanent":
        raise PermanentStepError(message, code="STEP.FAIL_PERMANENT")
    raise TransientStepError(message, code="STEP.FAIL_TRANSIENT")


_HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@step(
    "http",
    schema={
        "type": "object",
        "properties": {
            "method": {"enum": _HTTP_METHODS, "default": "GET"},
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "maxProperties": 50,
            },
            "json": {"description": "a JSON body to send"},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 10},
            "expected_status": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "description": "statuses that count as success; any 2xx when absent",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    },
)
def http_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Make an HTTP request. 5xx, 408, 429 and network errors are transient; other 4xx permanent."""
    url = params["url"]
    host = urlsplit(url).hostname
    if not host:
        raise PermanentStepError(f"no host in url {url!r}", code="STEP.HTTP_BAD_URL")
    if not settings.JOBPLATFORM_HTTP_ALLOW_PRIVATE:
        _refuse_private_host(host, url)
    headers = {"Idempotency-Key": ctx.idempotency_key, **params.get("headers", {})}
    timeout = min(params.get("timeout", 10), max(ctx.timeout, 0.001))
    try:
        response = _http_client().request(
            params.get("method", "GET"),
            url,
            headers=headers,
            json=params.get("json"),
            timeout=timeout,
        )
    except httpx.InvalidURL as exc:
        raise PermanentStepError(str(exc), code="STEP.HTTP_BAD_URL") from exc
    except httpx.TimeoutException as exc:
        raise TransientStepError(
            f"timed out after {timeout}s: {url}", code="STEP.HTTP_TIMEOUT"
        ) from exc
    except httpx.TransportError as exc:
        raise TransientStepError(f"{type(exc).__name__}: {exc}", code="STEP.HTTP_CONNECT") from exc

    expected = params.get("expected_status")
    ok = response.status_code in expected if expected else response.is_success
    if not ok:
        message = f"{params.get('method', 'GET')} {url} answered {response.status_code}"
        status = response.status_code
        if status >= 500 or status in (408, 429):
            raise TransientStepError(message, code="STEP.HTTP_STATUS")
        raise PermanentStepError(message, code="STEP.HTTP_STATUS")
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type", ""),
        "body": _body(response),
    }


def _body(response: httpx.Response) -> Any:
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text[:MAX_HTTP_BODY_CHARS]


def _refuse_private_host(host: str, url: str) -> None:
    """Refuse loopback, private, link-local and reserved targets (server-side request forgery)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TransientStepError(f"cannot resolve {host}: {exc}", code="STEP.HTTP_DNS") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise PermanentStepError(
                f"{url} resolves to non-public address {address}; "
                "set JOBPLATFORM_HTTP_ALLOW_PRIVATE=1 to allow it",
                code="STEP.HTTP_ADDRESS_REFUSED",
            )


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http_client() -> httpx.Client:
    """One pooled client per worker process, made lazily so it is never shared across a fork."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False)
        return _client
