"""Hostile input is a 4xx with a code, never a 500: the requests that used to crash, one by one,
through the REST API and the admin. tests/jobplatform/test_fuzz_endpoints.py generates more."""

from __future__ import annotations

import json
import math

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from jobplatform.api.parsers import INT_MAX, INT_MIN, json_depth_exceeds, parse_json
from jobplatform.errors import InvalidInput
from tests.deadletter.factories import DeadLetterFactory
from tests.factories import UserFactory
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db

JOB = '{"name": %s, "steps": [{"type": "log", "params": {"message": %s}}], "input": %s}'
OK = '"x"'


def post(api, path: str, raw: str | bytes, **extra):
    return api.generic("POST", path, raw, content_type="application/json", **extra)


def code(response, status: int) -> str:
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


@pytest.mark.parametrize(
    ("name", "message", "input_"),
    [
        ('"a\\u0000b"', OK, "{}"),  # NUL in the name
        (OK, '"\\u0000"', "{}"),  # in a step param
        (OK, OK, '{"k": "\\ud800"}'),  # a lone high surrogate in the input
        (OK, OK, '["\\udfff"]'),  # a lone low surrogate
        (OK, OK, '{"\\u0000key": 1}'),  # in a key
        (OK, '"\\ude00\\ud83d"', "{}"),  # a pair in the wrong order is two lone halves
    ],
)
def test_text_postgresql_cannot_store_is_refused(api, name, message, input_):
    response = post(api, "/api/v1/jobs/", JOB % (name, message, input_))
    assert code(response, 400) == "API.INVALID_CHARACTERS"
    assert response.json()["error"]["details"]["paths"]


def test_a_surrogate_pair_and_escaped_backslashes_are_fine(api):
    raw = JOB % ('"smile \\ud83d\\ude00"', '"\\\\u0000 is not NUL"', '{"k": "\\\\ud800"}')
    response = post(api, "/api/v1/jobs/", raw)
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["name"] == "smile \U0001f600"
    assert job["steps"][0]["params"]["message"] == "\\u0000 is not NUL"


@pytest.mark.parametrize("depth", [65, 5000, 200_000])
def test_json_nested_too_deep_is_refused(api, depth):
    raw = JOB % (OK, OK, "[" * depth + "]" * depth)
    assert code(post(api, "/api/v1/jobs/", raw), 400) == "API.JSON_TOO_DEEP"


def test_unbalanced_deep_json_is_refused_too(api):
    assert code(post(api, "/api/v1/jobs/", "[" * 100_000), 400) in {
        "API.JSON_TOO_DEEP",
        "API.MALFORMED_REQUEST",
    }


def test_nesting_up_to_the_limit_is_accepted(api):
    depth = 64 - 3  # the body, the job and its input are three levels
    raw = JOB % (OK, OK, "[" * depth + "]" * depth)
    assert post(api, "/api/v1/jobs/", raw).status_code == 201


def test_depth_counts_arrays_and_objects():
    assert not json_depth_exceeds({"a": "[[[[[[[[[[", "b": [1, [2]]}, 3)
    assert json_depth_exceeds({"a": "]]]]]", "b": [1, [2, [3]]]}, 3)
    assert json_depth_exceeds([{"a": [{}]}], 3)
    assert not json_depth_exceeds([{"a": [{}]}], 4)


@pytest.mark.parametrize(
    "number", ["1e400", "-1e400", "9223372036854775808", "-9223372036854775809", "1" + "0" * 5000]
)
def test_numbers_out_of_range_are_refused(api, number):
    response = post(api, "/api/v1/jobs/", JOB % (OK, OK, f'{{"n": {number}}}'))
    assert code(response, 400) == "API.NUMBER_OUT_OF_RANGE"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api, constant):
    response = post(api, "/api/v1/jobs/", JOB % (OK, OK, f'{{"n": {constant}}}'))
    assert code(response, 400) == "API.MALFORMED_REQUEST"


def test_a_body_that_is_not_utf8_is_malformed(api):
    raw = (JOB % (OK, OK, '"\xed\xa0\x80"')).encode("latin-1")  # a surrogate, encoded raw
    assert code(post(api, "/api/v1/jobs/", raw), 400) == "API.MALFORMED_REQUEST"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2000)
def test_a_body_beyond_the_limit_is_a_413(api):
    raw = JOB % (OK, OK, json.dumps("x" * 3000))
    response = post(api, "/api/v1/jobs/", raw)
    assert code(response, 413) == "API.BODY_TOO_LARGE"
    assert response.json()["error"]["details"] == {"limit": 2000, "size": len(raw)}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2000)
def test_a_body_longer_than_its_content_length_says_is_read_only_up_to_the_limit(api):
    raw = JOB % (OK, OK, json.dumps("x" * 3000))
    response = post(api, "/api/v1/jobs/", raw, CONTENT_LENGTH="100")
    # The server reads the declared length only: a truncated body is malformed, not a 500.
    assert code(response, 400) == "API.MALFORMED_REQUEST"


def test_bulk_submissions_and_schedules_are_parsed_alike(api):
    bulk = '{"jobs": [%s]}' % (JOB % ('"a\\u0000"', OK, "{}"))
    assert code(post(api, "/api/v1/jobs/bulk/", bulk), 400) == "API.INVALID_CHARACTERS"
    schedule = '{"name": "s", "cron": "* * * * *", "timezone": "\\u0000", "job": {"steps": []}}'
    assert code(post(api, "/api/v1/schedules/", schedule), 400) == "API.INVALID_CHARACTERS"
    schedule = json.dumps(
        {
            "name": "s",
            "cron": "* * * * *",
            "job": {"steps": [{"type": "log", "params": {"message": "m"}}]},
        }
    )
    created = post(api, "/api/v1/schedules/", schedule)
    assert created.status_code == 201, created.content
    pause = f"/api/v1/schedules/{created.json()['id']}/pause/"
    assert code(post(api, pause, '{"note": "\\ud800"}'), 400) == "API.INVALID_CHARACTERS"
    patch = api.generic(
        "PATCH", pause.replace("pause/", ""), '{"cron": "\\u0000"}', content_type="application/json"
    )
    assert code(patch, 400) == "API.INVALID_CHARACTERS"


def test_dead_letter_retry_overrides_are_parsed_alike(api, user):
    dead = DeadLetterFactory(job__owner=user)
    path = f"/api/v1/dead-letters/{dead.id}/retry/"
    assert code(post(api, path, '{"input": {"a": "\\u0000"}}'), 400) == "API.INVALID_CHARACTERS"
    assert code(post(api, path, '{"note": "\\udbff"}'), 400) == "API.INVALID_CHARACTERS"
    assert code(post(api, path, '{"max_retries": 1e999}'), 400) == "API.NUMBER_OUT_OF_RANGE"
    response = post(api, "/api/v1/dead-letters/retry/", '{"ids": [99999999999999999999]}')
    assert code(response, 400) == "API.NUMBER_OUT_OF_RANGE"


@pytest.mark.parametrize(
    "query",
    [
        "name=%00",
        "name_contains=a%00b",
        "queue=%00",
        "status=%00",
        "cursor=%00",
        "name=\x00",
    ],
)
def test_nul_in_a_query_string_is_refused(api, query):
    assert code(api.get(f"/api/v1/jobs/?{query}"), 400) == "API.INVALID_CHARACTERS"


def test_an_encoded_surrogate_in_a_query_string_is_harmless(api):
    # Invalid UTF-8 in a query string is replaced by U+FFFD when Django decodes it.
    assert api.get("/api/v1/jobs/?name=%ED%A0%80").status_code == 200
    assert api.get("/api/v1/dead-letters/?message_contains=%ED%A0%80").status_code == 200


def test_nul_in_a_header_is_refused(api):
    body = JOB % (OK, OK, "{}")
    response = post(api, "/api/v1/jobs/", body, HTTP_IDEMPOTENCY_KEY="k\x00")
    assert code(response, 400) == "API.INVALID_CHARACTERS"
    assert response.json()["error"]["details"] == {"in": "header Idempotency-Key"}


def test_the_admin_search_and_filters_refuse_nul(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    JobFactory(owner=admin)
    client.force_login(admin)
    for path in (
        "/admin/jobs/job/?q=%00",
        "/admin/deadletter/deadletter/?q=a%00",
        "/admin/jobs/job/?queue__exact=%00",
        "/admin/executions/execution/?q=%00",
        "/admin/jobs/schedule/?q=%00",
    ):
        assert code(client.get(path), 400) == "API.INVALID_CHARACTERS", path
    assert client.get("/admin/jobs/job/?q=%ED%A0%80").status_code == 200


def test_a_nul_session_cookie_is_refused(client):
    response = client.get("/admin/", HTTP_COOKIE="sessionid=abcdefgh\x00ijk")
    assert code(response, 400) == "API.INVALID_CHARACTERS"


@given(st.one_of(st.integers(), st.floats(allow_nan=False)))
@settings(max_examples=300, deadline=None)
def test_every_number_is_either_in_range_or_refused(number):
    """The parser checks numbers exactly only when the text may hold a big one: that shortcut
    must never let an out-of-range number through."""
    in_range = INT_MIN <= number <= INT_MAX if isinstance(number, int) else math.isfinite(number)
    raw = json.dumps({"n": number}).replace("Infinity", "1e999").encode()
    if in_range:
        assert parse_json(raw) == {"n": number}
    else:
        with pytest.raises(InvalidInput) as raised:
            parse_json(raw)
        assert raised.value.code == "API.NUMBER_OUT_OF_RANGE"
