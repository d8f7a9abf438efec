"""Every endpoint, fed hostile input by hypothesis, never answers 5xx.

The endpoints are enumerated from the URLconf, so a new one is fuzzed without touching this file:
every API route with every method its view implements, and every admin changelist (its search box
and filters). Path parameters are filled with objects the client owns (by the parameter's name)
or, for a name this file does not know, a value of the converter's type.

The inputs: JSON bodies whose keys come from the platform's own vocabulary (the request fields of
the parsers and serializers, the filters, the step types and their parameters) and whose values
are hostile (NUL, lone surrogates, huge strings and numbers, wrong types, deep nesting), raw bodies
that are not JSON at all, hostile query strings and an ``Idempotency-Key`` header.

When the API has an OpenAPI document (drf-spectacular), ``vocabulary()`` and ``bodies()`` are what
schemathesis replaces: the endpoint walk, the objects and the assertion stay.

Bounded: ``FUZZ_EXAMPLES`` examples per endpoint and method (default 10) and a third of that per
admin changelist: about half a minute in all. ``FUZZ_EXAMPLES=500`` for a long hunt.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deadletter.api.filters import DeadLetterFilter
from deadletter.api.serializers import BulkInput, RetryInput
from jobs.api.filters import JobFilter
from jobs.api.serializers import _FIELDS as JOB_FIELDS
from jobs.schedules.api.serializers import _SCHEDULE_FIELDS
from jobs.steps import registered_steps
from tests.conftest import client_for
from tests.deadletter.factories import DeadLetterFactory
from tests.factories import UserFactory
from tests.jobs.schedules.conftest import make_schedule

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_ADMIN = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Endpoint:
    route: str  # "api/v1/jobs/<uuid:job_id>/cancel/"
    method: str
    filters: tuple[str, ...]  # the view's filterset's names: query keys worth trying

    def __str__(self) -> str:
        return f"{self.method.upper()} /{self.route}"


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_walk(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern):
            found.append((route, pattern.callback))
    return found


def api_endpoints() -> list[Endpoint]:
    """Every route of the URLconf served by a DRF view, with each method the view implements."""
    endpoints: list[Endpoint] = []
    for route, callback in _walk(get_resolver().url_patterns):
        view = getattr(callback, "view_class", None)
        if view is None or route.startswith("admin/"):
            continue
        filterset = getattr(view, "filterset_class", None)
        filters = tuple(filterset.base_filters) if filterset else ()
        endpoints.extend(Endpoint(route, m, filters) for m in METHODS if hasattr(view, m))
    return endpoints


def admin_changelists() -> list[str]:
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    ]


def vocabulary() -> list[str]:
    """Field names the platform reads from requests: the keys worth sending."""
    names = set(JOB_FIELDS) | set(_SCHEDULE_FIELDS) | set(RetryInput().fields)
    names |= set(BulkInput().fields) | set(JobFilter.base_filters)
    names |= set(DeadLetterFilter.base_filters) | {"jobs", "note", "params", "type"}
    for step in registered_steps():
        names |= set(step.schema.get("properties", {}))
    return sorted(names)


HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ude00\ud83d",
    "\U0001f4a5",
    "",
    " ",
    "x" * 20_000,
    "\\u0000",
    "'; DROP TABLE jobs_job; --",
    "%00",
    "../../etc/passwd",
    "2026-13-45T99:99:99+99:99",
    "* * * * *",
    "Europe/Berlin",
    "default",
    str(uuid.uuid4()),
]
HOSTILE_NUMBERS = [0, -1, 1, 9, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 1e308, -1e-308, 0.5]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
numbers = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
keys = st.one_of(st.sampled_from(vocabulary()), text)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
steps = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from([s.name for s in registered_steps()]) | text},
        optional={"params": st.dictionaries(keys, values, max_size=4), "timeout": numbers},
    ),
    max_size=3,
)
objects = st.dictionaries(keys, st.one_of(values, steps), max_size=8)
RAW_BODIES = [
    "[" * 100_000,
    "[" * 70 + "]" * 70,
    '{"a":' * 5000 + "1" + "}" * 5000,
    '{"name": NaN}',
    '{"name": 1e999}',
    '{"name": "\\ud800", "steps": [{"type": "log", "params": {"message": "\\u0000"}}]}',
    "not json",
    "",
    "null",
    '"\\u0000"',
    "1" * 6000,
]


def bodies() -> st.SearchStrategy[bytes]:
    encoded = st.one_of(objects, values).map(lambda v: json.dumps(v).encode())
    raw = st.sampled_from(RAW_BODIES).map(str.encode)
    return st.one_of(encoded, encoded, raw, st.just(b"\xed\xa0\x80"), st.binary(max_size=50))


def query_strings(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    pairs = st.lists(
        st.tuples(st.sampled_from(names or ("q",)) | st.sampled_from(["cursor", "limit"]), text),
        max_size=4,
    )
    return pairs.map(lambda items: "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in items))


def _quoted(value: str) -> str:
    """Percent-encoded UTF-8, lone surrogates included (as a browser never would send them)."""
    return quote(value.encode("utf-8", "surrogatepass"))


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    """A user, their client, and one object of each kind for the path parameters."""
    user = UserFactory()
    dead: Any = DeadLetterFactory(job__owner=user)
    schedule = make_schedule(user, now=timezone.now())
    return {
        "client": client_for(user),
        "ids": {"job_id": dead.job_id, "schedule_id": schedule.id, "dead_letter_id": dead.id},
    }


def concrete_path(route: str, ids: dict[str, Any], draw: Any) -> str:
    """``route`` with its ``<converter:name>`` parts filled in."""
    path = route
    while "<" in path:
        start, end = path.index("<"), path.index(">")
        converter, _, name = path[start + 1 : end].rpartition(":")
        if name in ids:
            value = ids[name]
        elif converter == "int":
            value = draw(st.integers(min_value=0, max_value=2**63 - 1))
        elif converter == "uuid":
            value = draw(st.uuids())
        else:
            value = draw(st.text(alphabet="abc123-_", min_size=1, max_size=10))
        path = path[:start] + str(value) + path[end + 1 :]
    return "/" + path


def assert_not_a_server_error(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.content[:500]}"
    if response.status_code >= 400 and response["Content-Type"] == "application/json":
        code = response.json()["error"]["code"]
        assert "." in code, f"{what}: error code {code!r} is not namespaced"


@pytest.mark.parametrize("endpoint", api_endpoints(), ids=str)
@FUZZ
@given(data=st.data())
def test_no_endpoint_answers_5xx(world: dict[str, Any], endpoint: Endpoint, data: Any) -> None:
    path = concrete_path(endpoint.route, world["ids"], data.draw)
    query = data.draw(query_strings(endpoint.filters))
    url = f"{path}?{query}" if query else path
    extra = {}
    if data.draw(st.booleans()):
        extra["HTTP_IDEMPOTENCY_KEY"] = data.draw(text)
    if endpoint.method == "get":
        response = world["client"].get(url, **extra)
    else:
        body = data.draw(bodies())
        response = world["client"].generic(
            endpoint.method.upper(), url, body, content_type="application/json", **extra
        )
    assert_not_a_server_error(response, f"{endpoint} {url}")


def test_every_api_endpoint_is_fuzzed() -> None:
    """The walk finds the routes (so a regression in it cannot make the fuzz test vacuous)."""
    found = {str(e) for e in api_endpoints()}
    assert "POST /api/v1/jobs/" in found
    assert "PATCH /api/v1/schedules/<uuid:schedule_id>/" in found
    assert "POST /api/v1/dead-letters/<int:dead_letter_id>/retry/" in found
    assert len(found) >= 20


@pytest.mark.parametrize("changelist", admin_changelists())
@FUZZ_ADMIN
@given(data=st.data())
def test_no_admin_changelist_answers_5xx(client: Any, changelist: str, data: Any) -> None:
    client.force_login(_superuser())
    query = data.draw(query_strings(("q", "o", "p", "status__exact", "queue", "e")))
    assert_not_a_server_error(client.get(f"{changelist}?{query}"), f"{changelist}?{query}")


def _superuser() -> Any:
    user, _ = get_user_model().objects.get_or_create(
        username="fuzz-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    return user
