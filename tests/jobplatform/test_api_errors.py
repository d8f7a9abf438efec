from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_unknown_url_is_a_json_404(api):
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "API.NOT_FOUND"


def test_a_malformed_job_id_is_a_json_404(api):
    response = api.get("/api/v1/jobs/not-a-uuid/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "API.NOT_FOUND"


def test_a_wrong_method_is_a_405_with_a_code(api):
    response = api.delete("/api/v1/jobs/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "API.METHOD_NOT_ALLOWED"


def test_health_reports_database_broker_and_migrations(client):
    response = client.get("/api/v1/health/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "migrations": "ok"},
    }
