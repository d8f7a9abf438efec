"""Built-in steps called directly, the http step against a real local server."""

from __future__ import annotations

import socket
import uuid

import pytest

from jobs.steps import PermanentStepError, StepContext, TransientStepError, get_step


def ctx(attempt: int = 1, timeout: float = 30) -> StepContext:
    return StepContext(
        job_id=uuid.uuid4(), attempt=attempt, step_index=0, input={}, outputs=(), timeout=timeout
    )


def run(name: str, params: dict, context: StepContext | None = None):
    step = get_step(name)
    assert step is not None
    assert step.validation_errors(params) == []
    return step.run(params, context or ctx())


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/status/500/x", TransientStepError),
        ("/status/503/x", TransientStepError),
        ("/status/429/x", TransientStepError),
        ("/status/408/x", TransientStepError),
        ("/status/404/x", PermanentStepError),
        ("/status/400/x", PermanentStepError),
        ("/status/301/x", PermanentStepError),  # a redirect without a Location
    ],
)
def test_http_classifies_unexpected_statuses(http_target, path, error):
    with pytest.raises(error) as raised:
        run("http", {"url": http_target.url + path})
    assert raised.value.code == "STEP.HTTP_STATUS"


def test_http_accepts_the_statuses_it_is_told_to_expect(http_target):
    output = run("http", {"url": f"{http_target.url}/status/404/y", "expected_status": [404]})
    assert output["status"] == 404
    assert output["body"] == {"key": "y", "hits": 1}


def test_http_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    with pytest.raises(TransientStepError) as raised:
        run("http", {"url": f"http://127.0.0.1:{port}/"})
    assert raised.value.code == "STEP.HTTP_CONNECT"


def test_fail_fails_only_on_the_first_k_attempts():
    with pytest.raises(TransientStepError):
        run("fail", {"times": 2}, ctx(attempt=2))
    assert run("fail", {"times": 2}, ctx(attempt=3)) == {"failed": False, "attempt": 3}
    with pytest.raises(PermanentStepError):
        run("fail", {"mode": "permanent"})


def test_compute_counts_primes():
    assert run("compute", {"size": 100_000}) == {"size": 100_000, "primes": 9592}
    assert run("compute", {"size": 2}) == {"size": 2, "primes": 0}
