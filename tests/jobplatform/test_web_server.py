"""The web process as deployed: gunicorn with gunicorn.conf.py, a real HTTP connection."""

from __future__ import annotations

import json
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Job


@pytest.mark.django_db(transaction=True)
def test_gunicorn_keeps_a_clients_connection_alive_across_submissions(live_api, user):
    token = Token.objects.create(user=user).key
    target = urlsplit(live_api)
    http = HTTPConnection(target.hostname, target.port, timeout=30)
    body = json.dumps({"name": "kept", "steps": [{"type": "log", "params": {"message": "x"}}]})
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    sockets, ids = [], []
    for _ in range(3):
        http.request("POST", "/api/v1/jobs/", body, headers)
        response = http.getresponse()
        assert response.status == 201, response.read()
        assert response.getheader("Connection", "").lower() != "close"
        ids.append(json.loads(response.read())["id"])
        sockets.append(http.sock)
    http.close()
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # one TCP connection
    assert sorted(str(i) for i in Job.objects.values_list("id", flat=True)) == sorted(ids)
