"""The client's tests run against the live API (``live_api``: gunicorn on a free port of
127.0.0.1, over the test database), with the session's real worker and dispatcher (the
``platform`` fixture) running the jobs."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jobplatform_client import Client
from jobplatform_client.cli import main
from rest_framework.authtoken.models import Token

from jobplatform.roles import Role
from tests.factories import UserFactory, with_role

# Fast retries for the jobs these tests fail on purpose.
FAST_RETRIES = {"retry_backoff": 0.05, "retry_backoff_max": 0.2}


@pytest.fixture
def token(transactional_db: Any) -> str:
    """A new user's API token (the test's data is committed, so gunicorn sees it)."""
    user: Any = with_role(UserFactory(), Role.OPERATOR)
    return Token.objects.create(user=user).key


@pytest.fixture
def jp(live_api: str, token: str) -> Iterator[Client]:
    with Client(live_api, token=token) as client:
        yield client


@dataclass
class Cli:
    """The ``jobplatform`` command as one user of the API. Called, it runs the CLI's ``main`` in
    this process (fast: most tests make many calls); ``process`` and ``popen`` run
    ``python -m jobplatform_client`` as a user does, for what only a real process shows: the
    exit status, the console script, a terminal."""

    url: str
    token: str
    argv: tuple[str, ...] = (sys.executable, "-m", "jobplatform_client")

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "JOBPLATFORM_URL": self.url, "JOBPLATFORM_TOKEN": self.token}
        env.pop("JOBPLATFORM_API_KEY", None)
        return env

    def __call__(self, *args: str, url: str | None = None) -> Completed:
        out, err = io.StringIO(), io.StringIO()
        settings = {"JOBPLATFORM_URL": url or self.url, "JOBPLATFORM_TOKEN": self.token}
        saved = {name: os.environ.get(name) for name in [*settings, "JOBPLATFORM_API_KEY"]}
        os.environ.update(settings)
        os.environ.pop("JOBPLATFORM_API_KEY", None)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as exc:  # argparse's usage errors
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return Completed(code, out.getvalue(), err.getvalue())

    def process(self, *args: str, url: str | None = None) -> Completed:
        env = {**self.env, **({"JOBPLATFORM_URL": url} if url else {})}
        done = subprocess.run(
            [*self.argv, *args], env=env, capture_output=True, text=True, timeout=60
        )
        return Completed(done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str, **options: Any) -> subprocess.Popen[Any]:
        env = {**self.env, **options.pop("env", {})}
        return subprocess.Popen([*self.argv, *args], env=env, **options)


@pytest.fixture
def cli(live_api: str, token: str) -> Cli:
    return Cli(url=live_api, token=token)


@dataclass
class Completed:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Seen:
    """A request the proxy received."""

    at: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FlakyProxy:
    """A real HTTP server in front of the live API that misbehaves as scripted, then forwards.

    ``script`` is consumed one entry per request; once empty, requests are forwarded. Entries:
    ``(status, retry_after)`` answers that status with the API's error envelope and, unless
    ``None``, a ``Retry-After`` header, without forwarding; ``("lose", status)`` forwards the
    request, then throws the API's answer away and answers ``status`` (an answer lost on the way).
    """

    upstream: str
    script: list[tuple[Any, Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    forwarded: list[int] = field(default_factory=list)  # the API's statuses, in order

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        with self._lock:
            self.seen.append(
                Seen(time.monotonic(), request.command, request.path, dict(request.headers))
            )
            step = self.script.pop(0) if self.script else None
        if step is not None and step[0] != "lose":
            status, retry_after = step
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            code = {429: "API.THROTTLED", 503: "API.DATABASE_UNAVAILABLE"}.get(status, "X")
            envelope = {"error": {"code": code, "message": "scripted", "details": {}}}
            self._answer(request, status, headers, json.dumps(envelope).encode())
            return
        status, headers, answer = self._forward(request, body)
        with self._lock:
            self.forwarded.append(status)
        if step is not None:  # ("lose", status): the API acted, its answer never arrives
            envelope = {"error": {"code": "API.DATABASE_UNAVAILABLE", "message": "lost"}}
            self._answer(request, step[1], {"Retry-After": "0"}, json.dumps(envelope).encode())
            return
        self._answer(request, status, headers, answer)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(
            target.hostname or "127.0.0.1", target.port, timeout=30
        )
        skip = {"host", "connection", "content-length"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        connection.request(request.command, request.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        keep = {"content-type", "location", "retry-after"}
        out = {k: v for k, v in response.getheaders() if k.lower() in keep}
        connection.close()
        return response.status, out, answer

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        request.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy(live_api: str) -> Iterator[FlakyProxy]:
    server = FlakyProxy(upstream=live_api)
    yield server
    server.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
