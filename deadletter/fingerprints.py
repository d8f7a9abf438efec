"""Triage by fingerprint: dead letters that failed the same way share one.

A fingerprint is a hash of (step type, error type, normalised message). The message is normalised
by masking what differs between two failures of the same cause — numbers, ids, addresses — so
"GET http://10.0.0.7:8080/orders/8812 answered 503" and "... 10.0.0.9:8080/orders/97 answered 503"
fall in one group. Pure functions (the data migration that backfilled old rows has its own
frozen copy).
"""

from __future__ import annotations

import hashlib
import re

MAX_PATTERN_CHARS = 500

# Order matters: the specific shapes are masked before the generic number rule eats their digits.
_MASKS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<addr>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    # IPv6 (two or more colons between hex groups, so a time like "12:30" is left alone), with
    # brackets and a port when it has them.
    (re.compile(r"\[(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\](?::\d+)?", re.I), "<ip>"),
    (
        re.compile(
            r"(?<![\w:])(?=[0-9a-f:]*[0-9a-f])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I
        ),
        "<ip>",
    ),
    # Hex ids (hashes, trace ids, object ids): 8+ hex characters mixing letters and digits.
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<id>"),
    # Other opaque tokens (base64 keys, slugs with numbers): 16+ characters with letters and digits.
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{16,}\b", re.I), "<id>"),
    # Numbers not glued to a word ("attempt 3", "12s", "3.5"); "v2" and "step1" stay as they are.
    (re.compile(r"(?<![A-Za-z_<])\d+(?:\.\d+)?"), "<n>"),
]
_SPACES = re.compile(r"\s+")


def normalise_message(message: str) -> str:
    """``message`` with numbers, ids and addresses masked, whitespace collapsed, truncated."""
    pattern = message
    for regex, mask in _MASKS:
        pattern = regex.sub(mask, pattern)
    return _SPACES.sub(" ", pattern).strip()[:MAX_PATTERN_CHARS]


def fingerprint(*, step_type: str, error_type: str, pattern: str) -> str:
    """A stable 32-character id for the group of (step type, error type, normalised message)."""
    key = "\x1f".join([step_type, error_type, pattern])
    return hashlib.sha256(key.encode()).hexdigest()[:32]
