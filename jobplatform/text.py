"""What PostgreSQL cannot store in text or jsonb: NUL, and lone surrogates (no UTF-8 for them)."""

from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every character PostgreSQL cannot store replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)
