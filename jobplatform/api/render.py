"""Rendering helpers shared by the apps' plain-code API output."""

from __future__ import annotations

from datetime import UTC, datetime


def api_datetime(value: datetime | None) -> str | None:
    """A datetime as DRF's DateTimeField renders it here (ISO 8601 in UTC, ``Z`` for +00:00)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
