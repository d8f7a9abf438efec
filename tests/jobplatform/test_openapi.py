"""The OpenAPI document: served, valid, complete, and enforced (tests/openapi.py checks every
response of the suite against it; these tests show the check catches what it should)."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.http import JsonResponse
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver

from tests.jobs.factories import JobFactory
from tests.openapi import openapi_path, problems

pytestmark = pytest.mark.django_db


def api_routes() -> set[str]:
    """Every route under /api/v1/, as the document spells its paths."""

    def walk(patterns, prefix: str):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    return {
        openapi_path(route) for route in walk(get_resolver().url_patterns, "") if "api/v1/" in route
    }


def test_the_document_is_served_and_names_every_route_and_auth_scheme(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == api_routes()
    schemes = document["components"]["securitySchemes"]
    assert {"tokenAuth", "apiKeyAuth", "jwtAuth"} <= set(schemes)
    assert schemes["jwtAuth"]["bearerFormat"] == "JWT"
    jobs = document["paths"]["/api/v1/jobs/"]
    # A list is a cursor page; each error status lists its codes.
    ref = jobs["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = document["components"]["schemas"][ref.rpartition("/")[2]]
    assert page["required"] == ["next", "previous", "results"]
    assert {p["name"] for p in jobs["get"]["parameters"]} >= {"cursor", "page_size", "status"}
    codes = jobs["post"]["responses"]["409"]["content"]["application/json"]["schema"]
    assert (
        "JOBS.IDEMPOTENCY_KEY_REUSED" in codes["properties"]["error"]["properties"]["code"]["enum"]
    )
    assert jobs["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_the_document_is_valid_openapi_and_generates_without_warnings(tmp_path):
    # openapi-spec-validator checks the document; --fail-on-warn refuses any view or field
    # drf-spectacular had to guess at.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "api.yaml")
    assert "/api/v1/jobs/" in (tmp_path / "api.yaml").read_text()


def test_swagger_ui_and_redoc_need_no_credentials(client):
    for url, marker in (("/api/docs/", b"swagger-ui"), ("/api/redoc/", b"redoc")):
        response = client.get(url)
        assert response.status_code == 200, url
        assert marker in response.content.lower()
    assert client.get("/api/schema/").status_code == 200


def check(method: str, path: str, status: int, body: object) -> list[str]:
    request = getattr(RequestFactory(), method)(path)
    return problems(request, JsonResponse(body, status=status, safe=False))


def test_the_check_refuses_a_response_the_document_does_not_describe(user):
    job = JobFactory(owner=user)
    path = f"/api/v1/jobs/{job.id}/"
    error = {"error": {"code": "JOBS.NOT_FOUND", "message": "no", "details": {}}}
    assert check("get", path, 404, error) == []
    # A code the operation does not list, a status it does not answer, a field it does not name.
    wrong_code = {"error": {**error["error"], "code": "JOBS.NOT_PENDING"}}
    assert "is not one of" in check("get", path, 404, wrong_code)[0]
    assert "lists only" in check("get", path, 418, error)[0]
    page = {"next": None, "previous": None, "results": []}
    assert any("'extra'" in p for p in check("get", "/api/v1/jobs/", 200, {**page, "extra": 1}))
    assert check("get", "/api/v1/jobs/", 200, page) == []
    assert check("get", "/api/v1/jobs/", 200, {**page, "results": [1]})
    # No route: only the envelope is checked.
    assert check("get", "/api/v1/nothing/", 404, error) == []
    assert check("get", "/api/v1/nothing/", 404, {"detail": "Not found."})


def test_the_api_root_lists_every_resource_and_the_documentation(client):
    response = client.get("/api/v1/")
    assert response.status_code == 200
    root = response.json()
    assert root["resources"]["jobs"] == "http://testserver/api/v1/jobs/"
    assert root["documentation"]["swagger_ui"] == "http://testserver/api/docs/"
    # Every URL it names answers (a list, a form's 405 or the need for credentials: never a 404).
    for url in [*root["resources"].values(), *root["documentation"].values()]:
        assert client.get(url).status_code in (200, 401, 405), url
    collections = {
        openapi_path(u.removeprefix("http://testserver")[1:]) for u in root["resources"].values()
    }
    assert collections >= {p for p in api_routes() if "{" not in p and p != "/api/v1/"} - {
        "/api/v1/dead-letters/retry/",
        "/api/v1/dead-letters/dismiss/",
    }


def test_the_site_root_redirects_to_the_api_documentation(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"
