"""Log lines: what they carry, and where a trace id comes from."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from uuid import UUID

import pytest

from jobplatform import logs
from jobplatform.tracing import trace_id_from

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, TRACE),
        # Upper case and spaces are tolerated; the id is stored in lower case.
        ({"traceparent": f" 00-{TRACE.upper()}-00F067AA0BA902B7-01 "}, TRACE),
        # traceparent wins over X-Request-ID.
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Request-ID": "mine"}, TRACE),
        # Invalid traceparents: version ff, an all-zero trace id, a wrong shape.
        ({"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"}, None),
        ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, None),
        ({"traceparent": f"00-{TRACE}-01"}, None),
        # ...then X-Request-ID is used.
        ({"traceparent": "garbage", "X-Request-ID": "req-42"}, "req-42"),
        # A UUID loses its dashes (32 characters fit Job.trace_id).
        ({"X-Request-ID": str(UUID(TRACE))}, TRACE),
        ({"X-Request-ID": "x" * 32}, "x" * 32),
        ({"X-Request-ID": "x" * 33}, None),  # too long to store
        ({"X-Request-ID": "a b"}, None),  # characters a log line should not carry
        ({"X-Request-ID": ""}, None),
        ({}, None),
    ],
)
def test_the_trace_id_of_a_request(headers, expected):
    assert trace_id_from(headers) == expected


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/venv/bin/gunicorn", "jobplatform.wsgi:application"], "web"),
        (["/venv/lib/python3.11/site-packages/gunicorn/__main__.py", "x:y"], "web"),
        (["/venv/bin/celery", "-A", "jobplatform", "worker", "--loglevel", "INFO"], "worker"),
        (["/venv/lib/python3.11/site-packages/celery/__main__.py", "-A", "j", "beat"], "beat"),
        (["/venv/bin/celery", "-A", "jobplatform", "flower"], "flower"),
        (["manage.py", "run_dispatcher", "--poll", "1"], "dispatcher"),
        (["manage.py", "runserver"], "web"),
        (["manage.py", "migrate"], "migrate"),
    ],
)
def test_the_role_of_a_process_comes_from_its_command_line(argv, role, monkeypatch):
    monkeypatch.delenv("JOBPLATFORM_PROCESS_ROLE", raising=False)
    assert logs.process_role(argv) == role


def test_the_role_can_be_named(monkeypatch):
    monkeypatch.setenv("JOBPLATFORM_PROCESS_ROLE", "worker-io")
    assert logs.process_role(["manage.py", "run_dispatcher"]) == "worker-io"


def render(fmt: str, emit) -> str:
    """What the configured handler writes for the records ``emit`` logs."""
    config = logs.logging_config(fmt=fmt, level="INFO", role="worker")
    stream = io.StringIO()
    configure = logging.config.DictConfigurator(config).configure_custom
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configure(dict(config["formatters"]["structured"])))
    handler.addFilter(configure(dict(config["filters"]["redact"])))
    logger = logging.getLogger("jobplatform.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logs.clear()
    return stream.getvalue()


def test_a_json_line_carries_the_bound_job_context():
    def emit(logger):
        logs.bind(trace_id=TRACE, job_id="j-1", attempt=2, step=0, step_type="http")
        logger.info("step %s done", "http")

    line = json.loads(render("json", emit))
    assert list(line)[:6] == ["time", "level", "role", "pid", "logger", "message"]
    assert line["time"].endswith("Z")
    assert line | {"time": None, "pid": None} == {
        "time": None,
        "level": "info",
        "role": "worker",
        "pid": None,
        "logger": "jobplatform.test-logs",
        "message": "step http done",
        "trace_id": TRACE,
        "job_id": "j-1",
        "attempt": 2,
        "step": 0,
        "step_type": "http",
    }


def test_an_exception_is_rendered_into_the_line():
    def emit(logger):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")

    line = json.loads(render("json", emit))
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_credentials_leave_the_message_and_the_traceback():
    def emit(logger):
        try:
            raise RuntimeError("refused: Authorization: Bearer abcdef123456")
        except RuntimeError:
            logger.exception("calling with Token zyxwvu987654")

    line = json.loads(render("json", emit))
    assert line["message"] == "calling with Token [redacted]"
    assert "Bearer [redacted]" in line["exception"]
    assert "abcdef123456" not in json.dumps(line)


def test_celery_lines_keep_their_task_id():
    def emit(logger):
        logger.info("Task %(id)s received", {"id": "t-1"}, extra={"data": {"id": "t-1"}})

    assert json.loads(render("json", emit))["task_id"] == "t-1"


def test_the_console_format_is_one_readable_line():
    def emit(logger):
        logs.bind(trace_id=TRACE, job_id="j-1")
        logger.warning("slow")

    line = render("console", emit)
    assert line.count("\n") == 1
    assert "[warning  ] slow" in line
    assert f"trace_id={TRACE}" in line and "job_id=j-1" in line and "role=worker" in line


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="JOBPLATFORM_LOG_FORMAT"):
        logs.logging_config(fmt="xml", level="INFO")


def test_a_run_job_message_names_its_job_from_its_headers():
    headers = {
        "id": "task-1",
        "trace_id": TRACE,
        "argsrepr": "['0e9b3b0c-5c7e-4b8e-9a55-29e1f2b0d6a1', 3]",
    }
    assert logs.message_context(headers) == {
        "task_id": "task-1",
        "trace_id": TRACE,
        "job_id": "0e9b3b0c-5c7e-4b8e-9a55-29e1f2b0d6a1",
        "attempt": 3,
    }
    assert logs.message_context({"id": "t", "argsrepr": "[1, 2, 3]"}) == {"task_id": "t"}
