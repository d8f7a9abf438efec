"""The http step, and what keeps it from being turned inward (docs/security.md#the-http-step).

- The host of every request, the first and each redirect hop, is resolved **once**, by
  :func:`resolve`. Every address it returns must be allowed (:class:`AddressPolicy`), and the
  connection goes to the first of them: :class:`PinnedBackend` is the connection pool's network
  backend and connects to the pinned address, never to what a second lookup would say, so a
  DNS answer that changes between the check and the connection (DNS rebinding) changes nothing.
  The URL keeps its name, so the ``Host`` header, TLS SNI and certificate verification are for
  the name.
- Redirects are followed here, at most ``JOBPLATFORM_HTTP_MAX_REDIRECTS``, each hop checked as
  the first request; the caller's own headers are not sent to another origin.
- No cookies are kept: the client is shared by every job of every owner in the process, so a
  cookie one answer set would be sent with another owner's requests. A job's own ``Cookie``
  header goes to its origin, redirect hops included.
- The response body is read as a stream and refused beyond
  ``JOBPLATFORM_HTTP_MAX_RESPONSE_BYTES`` (after decompression).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx
from django.conf import settings

from jobplatform.api.parsers import parse_json
from jobplatform.text import storable
from jobs.steps.errors import PermanentStepError, TransientStepError
from jobs.steps.registry import StepContext

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The transient failures that are the host's, which its circuit breaker counts (not the step's
# own deadline, nor a refused address or a bad URL).
HOST_FAILURES = frozenset(
    {"STEP.HTTP_STATUS", "STEP.HTTP_TIMEOUT", "STEP.HTTP_CONNECT", "STEP.HTTP_DNS"}
)
MAX_BODY_CHARS = 65536  # of text kept in the step's output
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "method": {"enum": HTTP_METHODS, "default": "GET"},
        "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
        "headers": {
            "type": "object",
            # writeOnly: the values are secrets (Authorization, API keys), redacted wherever the
            # job is shown (jobs.redaction); the names stay visible.
            "additionalProperties": {"type": "string", "writeOnly": True},
            "maxProperties": 50,
        },
        "json": {"description": "a JSON body to send"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 10},
        "expected_status": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "minItems": 1,
            "description": "statuses that count as success; any 2xx when absent",
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``, in the resolver's order: the step's one DNS lookup per hop."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (None when it is one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        inner = non_public_reason(address.ipv4_mapped)
        return f"IPv4-mapped {inner}" if inner else None
    for reason, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return reason
    return None if address.is_global else "not global"


@dataclass(frozen=True)
class AddressPolicy:
    """Public unicast addresses are allowed; others only when allowlisted, by network or name."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    allow_all: bool = False

    @classmethod
    def parse(cls, entries: Sequence[str], *, allow_all: bool = False) -> AddressPolicy:
        """``JOBPLATFORM_HTTP_ALLOW``: IP addresses or CIDR networks, and host names."""
        networks, hosts = [], set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts), allow_all)

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why a connection to ``address`` (for the URL's ``host``) is refused; None: allowed."""
        reason = non_public_reason(address)
        if reason is None or self.allow_all or host.lower().rstrip(".") in self.hosts:
            return None
        plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if any(address in net or (plain is not None and plain in net) for net in self.networks):
            return None
        return reason


@cache
def _policy(entries: tuple[str, ...], allow_all: bool) -> AddressPolicy:
    return AddressPolicy.parse(entries, allow_all=allow_all)


def policy_from_settings() -> AddressPolicy:
    return _policy(
        tuple(settings.JOBPLATFORM_HTTP_ALLOW), bool(settings.JOBPLATFORM_HTTP_ALLOW_PRIVATE)
    )


def checked_address(url: httpx.URL, policy: AddressPolicy) -> str:
    """The address to connect to for ``url``: resolved once, every answer allowed by ``policy``."""
    host = url.host
    if url.scheme not in ("http", "https") or not host:
        raise PermanentStepError(f"not an http(s) URL: {url}", code="STEP.HTTP_BAD_URL")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = resolve(host, url.port or (443 if url.scheme == "https" else 80))
        except (OSError, UnicodeError) as exc:
            raise TransientStepError(f"cannot resolve {host}: {exc}", code="STEP.HTTP_DNS") from exc
    if not addresses:
        raise TransientStepError(f"{host} has no address", code="STEP.HTTP_DNS")
    for address in addresses:
        reason = policy.refusal(host, address)
        if reason is not None:
            raise PermanentStepError(
                f"{host} resolves to {address} ({reason}), which is refused; allow it with "
                "JOBPLATFORM_HTTP_ALLOW",
                code="STEP.HTTP_ADDRESS_REFUSED",
            )
    return str(addresses[0])


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, connecting only to the address pinned for the host.

    A host without a pin (nothing checked it in this thread) cannot be connected to at all.
    """

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()
        self._local = threading.local()

    @contextmanager
    def pinned(self, host: str, address: str) -> Iterator[None]:
        pins: dict[str, str] = self._pins()
        previous = pins.get(host)
        pins[host] = address
        try:
            yield
        finally:
            if previous is None:
                pins.pop(host, None)
            else:
                pins[host] = previous

    def _pins(self) -> dict[str, str]:
        if not hasattr(self._local, "pins"):
            self._local.pins = {}
        return self._local.pins  # type: ignore[no-any-return]

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        address = self._pins().get(host)
        if address is None:
            raise httpcore.ConnectError(f"no checked address for {host}")
        return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose network backend is :class:`PinnedBackend`;
    no proxies from the environment (a proxy would do the resolving, out of our sight)."""

    def __init__(self, backend: PinnedBackend, *, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


BACKEND = PinnedBackend()
_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One pooled client per worker process, made lazily so it is never shared across a fork."""
    global _client
    with _client_lock:
        if _client is None:
            # Certificates checked against JOBPLATFORM_HTTP_CA_BUNDLE when set (an internal CA),
            # else certifi's bundle, as httpx does.
            verify: ssl.SSLContext | bool = True
            if settings.JOBPLATFORM_HTTP_CA_BUNDLE:
                verify = ssl.create_default_context(cafile=settings.JOBPLATFORM_HTTP_CA_BUNDLE)
            _client = httpx.Client(
                transport=PinnedTransport(BACKEND, verify=verify),
                # A jar that accepts no cookie for any domain, so it stays empty: a Set-Cookie in
                # one job's answer is neither kept nor sent by a later job (another owner's) or
                # redirect hop, which httpx builds from this jar (Client._build_redirect_request).
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                follow_redirects=False,
                trust_env=False,
            )
        return _client


def http_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Make an HTTP request. 5xx, 408, 429 and network errors are transient; other 4xx permanent."""
    method = params.get("method", "GET")
    own_headers = params.get("headers", {})
    timeout = min(params.get("timeout", 10), max(ctx.timeout, 0.001))
    client = http_client()
    try:
        request = client.build_request(
            method,
            params["url"],
            headers={"Idempotency-Key": ctx.idempotency_key, **own_headers},
            json=params.get("json"),
            timeout=timeout,
        )
    except httpx.InvalidURL as exc:
        raise PermanentStepError(f"bad url: {exc}", code="STEP.HTTP_BAD_URL") from exc
    policy = policy_from_settings()
    origin = _origin(request.url)
    cookie = request.headers.get("Cookie")  # the caller's own, if any (the client keeps none)
    for hop in range(settings.JOBPLATFORM_HTTP_MAX_REDIRECTS + 1):
        response = _send(client, request, policy, timeout)
        try:
            if response.next_request is None:
                return _outcome(params, method, request.url, response)
            if hop == settings.JOBPLATFORM_HTTP_MAX_REDIRECTS:
                raise PermanentStepError(
                    f"more than {settings.JOBPLATFORM_HTTP_MAX_REDIRECTS} redirects from "
                    f"{redact_url(params['url'])}",
                    code="STEP.HTTP_TOO_MANY_REDIRECTS",
                )
            request = response.next_request
            if _origin(request.url) != origin:
                # The caller's headers (credentials, often) were meant for the first origin.
                for name in own_headers:
                    request.headers.pop(name, None)
                cookie = None  # nor back to it after another origin, like the other headers
            elif cookie is not None:
                # httpx drops Cookie on every redirect, to send the jar's instead (kept empty).
                request.headers["Cookie"] = cookie
        finally:
            response.close()
    raise AssertionError("unreachable")  # pragma: no cover


def step_host(url: Any) -> str | None:
    """The host an http step calls, as its circuit breaker and rate limits are named: the URL's
    host, lower case, with ``:port`` when the port is not the scheme's. None: no valid URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    host = parsed.host
    if not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if parsed.port is None else f"{host}:{parsed.port}"


def steps_hosts(steps: Sequence[Any]) -> list[str]:
    """The hosts of a pipeline's http steps, in order, each once."""
    hosts = (
        step_host(step.get("params", {}).get("url"))
        for step in steps
        if isinstance(step, dict) and step.get("type") == "http"
    )
    return list(dict.fromkeys(host for host in hosts if host is not None))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _send(
    client: httpx.Client, request: httpx.Request, policy: AddressPolicy, timeout: float
) -> httpx.Response:
    address = checked_address(request.url, policy)
    try:
        with BACKEND.pinned(request.url.host, address):
            return client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise TransientStepError(
            f"timed out after {timeout}s: {redact_url(str(request.url))}", code="STEP.HTTP_TIMEOUT"
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise PermanentStepError(
            f"{exc}: {redact_url(str(request.url))}", code="STEP.HTTP_BAD_URL"
        ) from exc
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise TransientStepError(
            f"{type(exc).__name__} for {redact_url(str(request.url))}: {exc}",
            code="STEP.HTTP_CONNECT",
        ) from exc


def _outcome(
    params: dict[str, Any], method: str, url: httpx.URL, response: httpx.Response
) -> dict[str, Any]:
    expected = params.get("expected_status")
    status = response.status_code
    if not (status in expected if expected else response.is_success):
        message = f"{method} {redact_url(str(url))} answered {status}"
        if status >= 500 or status in (408, 429):
            raise TransientStepError(message, code="STEP.HTTP_STATUS")
        raise PermanentStepError(message, code="STEP.HTTP_STATUS")
    content_type = response.headers.get("content-type", "")
    return {
        "status": status,
        "content_type": storable(content_type),
        "body": _body(response, content_type, _read_capped(response, url)),
    }


def _read_capped(response: httpx.Response, url: httpx.URL) -> bytes:
    limit = settings.JOBPLATFORM_HTTP_MAX_RESPONSE_BYTES
    declared = response.headers.get("content-length", "")

    def too_large() -> PermanentStepError:  # made only when raised: redacting costs a URL parse
        return PermanentStepError(
            f"{redact_url(str(url))}: the response body exceeds {limit} bytes",
            code="STEP.HTTP_RESPONSE_TOO_LARGE",
        )

    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise TransientStepError(
            f"timed out reading {redact_url(str(url))}", code="STEP.HTTP_TIMEOUT"
        ) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise TransientStepError(
            f"{type(exc).__name__} reading {redact_url(str(url))}: {exc}",
            code="STEP.HTTP_CONNECT",
        ) from exc
    return b"".join(chunks)


def _body(response: httpx.Response, content_type: str, content: bytes) -> Any:
    """Parsed JSON when the content type says so and the value is storable, else text."""
    if "json" in content_type:
        try:  # the API's limits, for the same reasons: the output goes to PostgreSQL
            return parse_json(content)
        except Exception:  # noqa: S110 - not storable JSON: kept as text below
            pass
    text = content.decode(response.encoding or "utf-8", errors="replace")
    return storable(text[:MAX_BODY_CHARS])


_SECRET_QUERY_NAMES = ("token", "key", "secret", "password", "passwd", "signature", "auth", "sig")


def redact_url(url: str) -> str:
    """``url`` for messages and logs: no userinfo, and no values of secret-looking query names."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    if parsed.query:
        params = [
            (k, "redacted" if any(s in k.lower() for s in _SECRET_QUERY_NAMES) else v)
            for k, v in parsed.params.multi_items()
        ]
        parsed = parsed.copy_with(params=params)
    return storable(str(parsed))
