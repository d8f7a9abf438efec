"""A logging filter that keeps credentials out of log lines, whoever wrote them.

Nothing in the platform logs a request's headers or a token on purpose; this is the net under
that: a ``log`` step's message, an exception from a library that quotes a header, a URL with a
password. It rewrites the formatted message of every record that passes the handlers it is on
(the web's, through ``LOGGING``, and the Celery worker's, through ``jobplatform.celery``).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS = [
    # Authorization: Token abc…, Bearer …, Api-Key …, Basic … (the scheme stays readable)
    (
        re.compile(r"\b(Token|Bearer|Api-Key|Basic|Digest)(\s+)[A-Za-z0-9._~+/=:-]{6,}", re.I),
        rf"\1\2{REDACTED}",
    ),
    # A header or field that is a credential by its name: X-Api-Key: …, "password": "…"
    (
        re.compile(
            r"""(\b(?:x-api-key|api[_-]?key|password|passwd|secret|token|cookie|set-cookie)"""
            r"""['"]?\s*[:=]\s*['"]?)[^'"\s,;}&]+""",
            re.I,
        ),
        rf"\1{REDACTED}",
    ),
    # https://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.I), rf"\1{REDACTED}@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger) -> None:
    """Put the filter on every handler of ``logger`` (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
