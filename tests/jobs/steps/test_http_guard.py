"""The http step cannot be turned inward: refused addresses, the allowlist, one DNS lookup per hop
and a connection to the checked address, redirects re-checked, response bodies capped.

Requests only ever reach the local HttpTarget on 127.0.0.1: a refused address is refused before
any connection, and names are answered by replacing the step's resolver (DNS is outside the
house), never by the network.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpcore
import pytest
import trustme
from django.test import override_settings

from jobs.steps import PermanentStepError, StepContext, TransientStepError, get_step
from jobs.steps import http as http_module
from jobs.steps.http import AddressPolicy, non_public_reason, redact_url

LOCAL = ipaddress.ip_address("127.0.0.1")


def ctx() -> StepContext:
    return StepContext(
        job_id=uuid.uuid4(), attempt=1, step_index=0, input={}, outputs=(), timeout=30
    )


def run(params: dict) -> dict:
    step = get_step("http")
    assert step is not None
    assert step.validation_errors(params) == []
    return step.run(params, ctx())


@pytest.fixture
def dns(monkeypatch):
    """The step's resolver, answering from a table; records every lookup."""
    answers: dict[str, list] = {}
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list:
        lookups.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = answers[host]
        return answer.pop(0) if answer and isinstance(answer[0], list) else answer

    monkeypatch.setattr(http_module, "resolve", resolve)
    return answers, lookups


def port_of(http_target) -> int:
    return int(http_target.url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not global"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_addresses_are_classified(address, reason):
    assert non_public_reason(ipaddress.ip_address(address)) == reason


@override_settings(JOBPLATFORM_HTTP_ALLOW=[], JOBPLATFORM_HTTP_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "224.0.0.1",
        "0.0.0.0",
        "[fe80::1]",
    ],
)
def test_non_public_addresses_are_refused_by_default(host):
    with pytest.raises(PermanentStepError) as raised:
        run({"url": f"http://{host}:9/"})
    assert raised.value.code == "STEP.HTTP_ADDRESS_REFUSED"


def test_the_allowlist_opens_a_network_or_a_host():
    policy = AddressPolicy.parse(["10.0.0.0/8", "192.168.1.7", "internal.example"])
    assert policy.refusal("a", ipaddress.ip_address("10.9.8.7")) is None
    assert policy.refusal("a", ipaddress.ip_address("::ffff:10.9.8.7")) is None
    assert policy.refusal("a", ipaddress.ip_address("192.168.1.7")) is None
    assert policy.refusal("a", ipaddress.ip_address("192.168.1.8")) == "private"
    assert policy.refusal("Internal.Example.", ipaddress.ip_address("172.16.0.1")) is None
    assert policy.refusal("other.example", ipaddress.ip_address("172.16.0.1")) == "private"
    assert AddressPolicy.parse([], allow_all=True).refusal("a", LOCAL) is None


def test_an_allowlisted_address_is_reached(http_target):
    with override_settings(JOBPLATFORM_HTTP_ALLOW=["127.0.0.0/8"]):
        assert run({"url": f"{http_target.url}/ok/allow-net"})["status"] == 200
    with override_settings(JOBPLATFORM_HTTP_ALLOW=["10.0.0.0/8"]):
        with pytest.raises(PermanentStepError) as raised:
            run({"url": f"{http_target.url}/ok/allow-other"})
        assert raised.value.code == "STEP.HTTP_ADDRESS_REFUSED"
    with override_settings(JOBPLATFORM_HTTP_ALLOW=[], JOBPLATFORM_HTTP_ALLOW_PRIVATE=True):
        assert run({"url": f"{http_target.url}/ok/allow-all"})["status"] == 200


def test_an_allowlisted_name_is_reached_under_its_name(http_target, dns):
    answers, _ = dns
    answers["internal.example"] = [LOCAL]
    url = f"http://internal.example:{port_of(http_target)}/ok/allow-name"
    with override_settings(JOBPLATFORM_HTTP_ALLOW=["internal.example"]):
        assert run({"url": url})["body"] == {"key": "allow-name", "hits": 1}
    host = http_target.headers["/ok/allow-name"]["Host"]
    assert host == f"internal.example:{port_of(http_target)}"


def test_dns_rebinding_changes_nothing_the_name_is_resolved_once(http_target, dns):
    """The first answer passes the check; a second lookup would say the metadata service. There is
    no second lookup: the connection goes to the checked address, with the name in Host."""
    answers, lookups = dns
    answers["rebind.example"] = [[LOCAL], [ipaddress.ip_address("169.254.169.254")]]
    url = f"http://rebind.example:{port_of(http_target)}/ok/rebind"
    assert run({"url": url})["body"] == {"key": "rebind", "hits": 1}
    assert lookups == ["rebind.example"]
    assert http_target.headers["/ok/rebind"]["Host"] == f"rebind.example:{port_of(http_target)}"


def test_a_name_with_one_refused_address_is_refused(dns):
    answers, _ = dns
    answers["mixed.example"] = [ipaddress.ip_address("8.8.8.8"), LOCAL]
    with override_settings(JOBPLATFORM_HTTP_ALLOW=[]), pytest.raises(PermanentStepError) as raised:
        run({"url": "http://mixed.example/"})
    assert raised.value.code == "STEP.HTTP_ADDRESS_REFUSED"
    assert "127.0.0.1 (loopback)" in str(raised.value)


def test_a_dns_failure_is_transient(dns):
    _, lookups = dns  # "nowhere.example" is not in the table: the resolver says so
    with pytest.raises(TransientStepError) as raised:
        run({"url": "http://nowhere.example/"})
    assert raised.value.code == "STEP.HTTP_DNS"
    assert lookups == ["nowhere.example"]


def test_the_connection_backend_connects_only_to_a_pinned_host():
    with pytest.raises(httpcore.ConnectError):
        http_module.BACKEND.connect_tcp("unchecked.example", 80)


def test_redirects_are_followed_and_bounded(http_target):
    output = run({"url": f"{http_target.url}/redirect/2/hops"})
    assert output["body"] == {"key": "hops", "hits": 1}
    assert http_target.count("/redirect/2/hops") == 1
    with (
        override_settings(JOBPLATFORM_HTTP_MAX_REDIRECTS=1),
        pytest.raises(PermanentStepError) as raised,
    ):
        run({"url": f"{http_target.url}/redirect/3/too-many"})
    assert raised.value.code == "STEP.HTTP_TOO_MANY_REDIRECTS"


def test_every_redirect_hop_is_checked(http_target):
    location = quote("http://169.254.169.254/latest/meta-data/", safe="")
    with pytest.raises(PermanentStepError) as raised:
        run({"url": f"{http_target.url}/redirect-to/meta?location={location}"})
    assert raised.value.code == "STEP.HTTP_ADDRESS_REFUSED"
    assert "169.254.169.254 (link-local)" in str(raised.value)


def test_the_callers_headers_do_not_follow_a_redirect_to_another_origin(http_target, dns):
    answers, _ = dns
    answers["elsewhere.example"] = [LOCAL]
    location = quote(f"http://elsewhere.example:{port_of(http_target)}/ok/cross", safe="")
    run(
        {
            "url": f"{http_target.url}/redirect-to/cross?location={location}",
            "headers": {"X-Api-Key": "s3cret"},
        }
    )
    first = http_target.headers[f"/redirect-to/cross?location={location}"]
    assert first["X-Api-Key"] == "s3cret"
    second = http_target.headers["/ok/cross"]
    assert "X-Api-Key" not in second
    assert second["Idempotency-Key"] == first["Idempotency-Key"]


def test_a_set_cookie_is_not_sent_by_a_later_request_to_the_same_host(http_target):
    """The client is the worker process's, shared by every job of every owner: a cookie one job's
    answer sets must not reach the next job's request (another owner's session)."""
    run({"url": f"{http_target.url}/set-cookie/owner-a-session/jar-next"})
    run({"url": f"{http_target.url}/ok/jar-next"})  # another job: ctx() is a new job id
    assert "Cookie" not in http_target.headers["/ok/jar-next"]
    assert list(http_module.http_client().cookies.jar) == []


def test_a_set_cookie_is_not_sent_on_the_next_redirect_hop(http_target):
    output = run({"url": f"{http_target.url}/set-cookie/hop-session/jar-hop?location=/ok/jar-hop"})
    assert output["body"] == {"key": "jar-hop", "hits": 1}
    assert "Cookie" not in http_target.headers["/ok/jar-hop"]


def test_the_callers_cookie_is_sent_to_its_origin_and_only_there(http_target, dns):
    answers, _ = dns
    answers["elsewhere.example"] = [LOCAL]
    first = "/set-cookie/theirs/jar-own?location=/ok/jar-own"
    run({"url": f"{http_target.url}{first}", "headers": {"Cookie": "session=mine"}})
    assert http_target.headers[first]["Cookie"] == "session=mine"
    # httpx drops a Cookie header on every redirect; the step puts the caller's back on the same
    # origin, without the one the answer set.
    assert http_target.headers["/ok/jar-own"]["Cookie"] == "session=mine"
    location = quote(f"http://elsewhere.example:{port_of(http_target)}/ok/jar-away", safe="")
    away = f"/set-cookie/theirs/jar-away?location={location}"
    run({"url": f"{http_target.url}{away}", "headers": {"Cookie": "session=mine"}})
    assert http_target.headers[away]["Cookie"] == "session=mine"
    assert "Cookie" not in http_target.headers["/ok/jar-away"]


@override_settings(JOBPLATFORM_HTTP_MAX_RESPONSE_BYTES=1000)
@pytest.mark.parametrize("path", ["big", "big-unsized"])
def test_a_response_body_beyond_the_limit_is_refused(http_target, path):
    assert run({"url": f"{http_target.url}/{path}/1000/fits"})["body"] == "x" * 1000
    with pytest.raises(PermanentStepError) as raised:
        run({"url": f"{http_target.url}/{path}/5000/too-big"})
    assert raised.value.code == "STEP.HTTP_RESPONSE_TOO_LARGE"


def test_a_json_answer_postgresql_cannot_store_is_kept_as_clean_text(http_target):
    body = run({"url": f"{http_target.url}/json-nul/nul"})["body"]
    assert isinstance(body, str)
    assert "\x00" not in body
    assert '"key": "nul"' in body


def test_urls_in_messages_lose_their_credentials():
    assert (
        redact_url("https://user:pw@api.example/x?token=abc&q=1&api_key=k")
        == "https://api.example/x?token=redacted&q=1&api_key=redacted"
    )


def test_a_failure_message_carries_no_credentials(http_target):
    url = http_target.url.replace("http://", "http://user:hunter2@") + "/status/404/cred?token=t0k"
    with pytest.raises(PermanentStepError) as raised:
        run({"url": url})
    assert "hunter2" not in str(raised.value)
    assert "t0k" not in str(raised.value)


@pytest.fixture
def tls_target(tmp_path):
    """A real HTTPS server on 127.0.0.1 with a certificate for ``pinned.example`` from a test CA,
    recording the SNI name each handshake asked for; the step's client trusts only that CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("pinned.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"host": self.headers["Host"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with override_settings(JOBPLATFORM_HTTP_CA_BUNDLE=str(bundle)):
        http_module._client = None  # a client that trusts the test CA
        try:
            yield server.server_address[1], names
        finally:
            http_module._client = None
            server.shutdown()
            server.server_close()


def test_tls_is_verified_for_the_name_while_connecting_to_the_pinned_address(tls_target, dns):
    port, names = tls_target
    answers, lookups = dns
    answers["pinned.example"] = [LOCAL]
    answers["impostor.example"] = [LOCAL]
    output = run({"url": f"https://pinned.example:{port}/"})
    assert output["body"] == {"host": f"pinned.example:{port}"}
    assert names == ["pinned.example"]  # SNI carried the name, not 127.0.0.1
    # The same address under another name: the certificate does not match, the request fails.
    with pytest.raises(TransientStepError) as raised:
        run({"url": f"https://impostor.example:{port}/"})
    assert raised.value.code == "STEP.HTTP_CONNECT"
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
    assert lookups == ["pinned.example", "impostor.example"]
