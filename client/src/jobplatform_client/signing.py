"""Checking a completion callback's signature, in the receiver."""

from __future__ import annotations

import hashlib
import hmac


def verify_callback(raw_body: bytes, signature: str | None, key: str) -> bool:
    """Whether ``signature`` (the ``X-Jobplatform-Signature`` header) signs ``raw_body`` (the
    request's bytes, before any parsing) under ``key`` (``Jobs.callback_key()``), compared in
    constant time."""
    expected = "sha256=" + hmac.new(key.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature or "")
