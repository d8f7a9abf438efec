"""Test helpers: awaiting a condition, a real local HTTP server, real platform processes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")


TERMINAL = {"succeeded", "failed", "cancelled"}


def executions_of_prepared(fragment: str) -> int:
    """How many times this thread's connection ran prepared statements containing ``fragment``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return cursor.fetchone()[0]


def submit_job(api: Any, steps: list[dict[str, Any]], **fields: Any) -> str:
    """Submit through the REST API with fast retries; return the new job's id."""
    body = {"name": "test", "steps": steps, "retry_backoff": 0.05, "retry_backoff_max": 0.2}
    response = api.post("/api/v1/jobs/", {**body, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def job_detail(api: Any, job_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/jobs/{job_id}/")
    assert response.status_code == 200
    return response.json()


def await_finished(api: Any, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The job's detail once it reached a terminal state."""
    return wait_for(
        lambda: (d := job_detail(api, job_id))["status"] in TERMINAL and d,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def wait_for(
    condition: Callable[[], T | Literal[False] | None],
    *,
    timeout: float = 30.0,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class HttpTarget:
    """A real HTTP server on 127.0.0.1 for the http step. Paths (``key`` isolates tests):

    - ``/ok/<key>``: 200 with JSON ``{"key": key, "hits": n}``
    - ``/status/<code>/<key>``: answers ``code``
    - ``/flaky/<k>/<key>``: 503 for the first ``k`` hits, then 200
    - ``/block/<key>``: holds the request until :meth:`release` (or 30 s), then 200
    - ``/redirect/<n>/<key>``: 302 to ``/redirect/<n-1>/<key>`` while n > 0, then 200
    - ``/redirect-to/<key>?location=<url>``: 302 to ``url``
    - ``/big/<n>/<key>``: 200 with ``n`` bytes of text (``/big-unsized/...``: no Content-Length,
      the body ends when the connection closes)
    - ``/json-nul/<key>``: 200 with JSON holding a NUL character (``"\\u0000"``)
    - ``/trickle/<n>/<key>``: 200 with ``n`` bytes of text, one every 0.1 s (no read waits long,
      the whole takes n / 10 s)
    - ``/set-cookie/<value>/<key>``: 200 with ``Set-Cookie: session=<value>; Path=/``; with
      ``?location=<url>``, a 302 to ``url`` carrying that Set-Cookie
    Every request is counted per path; the last request's headers are kept per path.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.bodies: dict[str, list[Any]] = {}  # JSON bodies received, per path
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target._handle(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def gate(self, key: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(key, threading.Event())

    def release(self, key: str) -> None:
        self.gate(key).set()

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = request.path
        with self._lock:
            self.hits[path] += 1
            hits = self.hits[path]
            self.headers[path] = dict(request.headers.items())
            if body:
                self.bodies.setdefault(path, []).append(json.loads(body))
        parts = urlsplit(path).path.strip("/").split("/")
        status = 200
        content_type, answer = "application/json", json.dumps({"key": parts[-1], "hits": hits})
        headers: dict[str, str] = {}
        if parts[0] == "redirect" and int(parts[1]) > 0:
            status, headers["Location"] = 302, f"/redirect/{int(parts[1]) - 1}/{parts[-1]}"
        elif parts[0] == "redirect-to":
            status = 302
            headers["Location"] = parse_qs(urlsplit(path).query)["location"][0]
        elif parts[0] == "set-cookie":
            headers["Set-Cookie"] = f"session={parts[1]}; Path=/"
            if location := parse_qs(urlsplit(path).query).get("location"):
                status, headers["Location"] = 302, location[0]
        elif parts[0] in ("big", "big-unsized", "trickle"):
            content_type, answer = "text/plain", "x" * int(parts[1])
        elif parts[0] == "json-nul":
            answer = json.dumps({"key": parts[-1], "text": "a\u0000b"})
        elif parts[0] == "status":
            status = int(parts[1])
        elif parts[0] == "flaky" and hits <= int(parts[1]):
            status = 503
        elif parts[0] == "block":
            self.gate(parts[-1]).wait(timeout=30)
        raw = answer.encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        for name, value in headers.items():
            request.send_header(name, value)
        if parts[0] != "big-unsized":
            request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        if parts[0] == "trickle":
            self._trickle(request, int(parts[1]))
            return
        request.wfile.write(raw)

    @staticmethod
    def _trickle(request: BaseHTTPRequestHandler, size: int) -> None:
        for _ in range(size):
            time.sleep(0.1)
            try:
                request.wfile.write(b"x")
                request.wfile.flush()
            except OSError:  # the client gave up
                return

    def close(self) -> None:
        for gate in self._gates.values():
            gate.set()
        self.server.shutdown()
        self.server.server_close()
