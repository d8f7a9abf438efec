"""The one JSON parser of the API: size, depth, number and character limits before any view runs.

Everything a client sends as JSON passes through :class:`LimitedJSONParser` (it is the only entry
of ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``), so what reaches a view, a service and
PostgreSQL is a value PostgreSQL can store and Python can walk:

- at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (``JOBPLATFORM_MAX_REQUEST_BYTES``), else
  ``413 API.BODY_TOO_LARGE``; the same setting caps Django's own form parsing (the admin);
- nested at most ``JOBPLATFORM_MAX_JSON_DEPTH`` arrays/objects deep, else ``400
  API.JSON_TOO_DEEP`` (Python's recursion limit would otherwise turn deep nesting into a 500 in
  the parser, the schema validator or the JSON encoder: json.loads's own RecursionError is caught
  and answered the same way);
- integers within 64 bits and finite floats, else ``400 API.NUMBER_OUT_OF_RANGE`` (``1e400``
  parses to infinity, which PostgreSQL's jsonb refuses; an id of 10**30 overflows a bigint);
- no NUL character and no lone surrogate (``\\u0000``, ``\\ud800``) in any string or key, else
  ``400 API.INVALID_CHARACTERS``: PostgreSQL's text and jsonb cannot store NUL, and a lone
  surrogate cannot be encoded as UTF-8 at all.

Malformed JSON, ``NaN`` and ``Infinity`` stay ``400 API.MALFORMED_REQUEST`` (DRF's ParseError).
Query strings and headers are checked by :class:`jobplatform.middleware.RejectUnstorableInput`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from jobplatform.errors import InvalidInput, PayloadTooLarge
from jobplatform.text import unstorable_paths

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)

# Digits become "0", exponent markers "e", signs "+", everything else a space.
_NUMBER_SHAPE = bytes(
    ord("0") if chr(b).isdigit() and b < 128 else
    ord("e") if b in b"eE" else
    ord("+") if b in b"+-" else
    ord(" ")
    for b in range(256)
)  # fmt: skip
# What json.loads could turn into NUL or a surrogate: only escapes can (a raw NUL is invalid JSON,
# raw surrogate bytes invalid UTF-8). A hit means "walk the parsed value", not "refuse".
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class _NumberOutOfRange(ValueError):
    pass


class _ConstantRefused(ValueError):
    pass


def _parse_int(text: str) -> int:
    # A length check first: int() of 5000 digits is slow and then refused by Python itself.
    if len(text.lstrip("-")) > 19 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise _NumberOutOfRange(text[:40])
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberOutOfRange(text[:40])
    return value


def _parse_constant(text: str) -> Any:
    raise _ConstantRefused(f"{text} is not JSON")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when arrays/objects nest deeper than ``limit`` in the parsed JSON ``value``.

    Level by level over the containers, without recursion. (A scan of the text cannot tell: the
    brackets inside strings can hide real nesting, and dropping the strings first with a regular
    expression cost twice json.loads.)
    """
    level = [value]
    for _ in range(limit):
        deeper = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True


def _may_hold_big_numbers(raw: bytes) -> bool:
    """False when no number in ``raw`` can be out of range: no run of 19 digits (an integer
    beyond 64 bits, a float beyond 1e308) and no exponent of 3 digits. bytes.translate and ``in``
    run in C; strings that merely look like this only cost the slower, exact parse."""
    shape = raw.translate(_NUMBER_SHAPE)
    return b"0" * 19 in shape or b"e000" in shape or b"e+000" in shape


def invalid_characters(where: list[str]) -> InvalidInput:
    return InvalidInput(
        "API.INVALID_CHARACTERS",
        "text may not contain NUL characters or unpaired surrogate code points",
        {"paths": sorted(where)[:20]},
    )


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON under the limits in the module's docstring."""
    limit = settings.JOBPLATFORM_MAX_JSON_DEPTH
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"JSON parse error - the body is not UTF-8: {exc.reason}") from None
    # The number hooks cost a Python call per number (doubling json.loads on a bulk body): only
    # when a number may be out of range.
    try:
        if _may_hold_big_numbers(raw):
            data = json.loads(
                text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
            )
        else:
            data = json.loads(text, parse_constant=_parse_constant)
    except _NumberOutOfRange as exc:
        raise InvalidInput(
            "API.NUMBER_OUT_OF_RANGE",
            "numbers must be finite, and integers within 64 bits",
            {"number": str(exc), "min": INT_MIN, "max": INT_MAX},
        ) from None
    except RecursionError:
        raise _too_deep(limit) from None
    except ValueError as exc:  # JSONDecodeError, _ConstantRefused
        raise ParseError(f"JSON parse error - {exc}") from None
    # Deeper than the recursion limit is a RecursionError above; deeper than ``limit`` is found
    # here, before a schema validator or an encoder recurses through it.
    containers = text.count("[") + text.count("{")  # an upper bound of the depth, in C
    if containers > limit and json_depth_exceeds(data, limit):
        raise _too_deep(limit)
    if _SUSPECT_ESCAPE.search(text):
        where = list(unstorable_paths(data))
        if where:
            raise invalid_characters(where)
    return data


def _too_deep(limit: int) -> InvalidInput:
    return InvalidInput(
        "API.JSON_TOO_DEEP",
        f"arrays and objects may nest at most {limit} levels deep",
        {"limit": limit},
    )


def read_body(stream: IO[bytes] | None, declared: str | None) -> bytes:
    """At most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes of ``stream``; 413 beyond."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        declared_size = int(declared or 0)
    except ValueError:
        declared_size = 0
    if declared_size > limit:
        raise _too_large(declared_size, limit)
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise _too_large(None, limit)
    return raw


def _too_large(size: int | None, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "API.BODY_TOO_LARGE",
        f"the request body may have at most {limit} bytes",
        {"limit": limit} | ({"size": size} if size is not None else {}),
    )


class LimitedJSONParser(BaseParser):
    """``application/json`` under the limits of :func:`parse_json` and :func:`read_body`."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        return parse_json(read_body(stream, declared))
