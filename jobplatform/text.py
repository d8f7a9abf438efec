"""What PostgreSQL cannot store in text or jsonb: NUL, and lone surrogates (no UTF-8 for them)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every character PostgreSQL cannot store replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)


def unstorable_paths(value: Any, path: str = "") -> Iterator[str]:
    """JSON-pointer-like paths of the strings and keys in ``value`` with NUL or a lone surrogate."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                yield where or "/"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if UNSTORABLE.search(key):
                    yield f"{where}/{key.encode('unicode_escape').decode()}"
                else:
                    stack.append((f"{where}/{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}/{index}", child) for index, child in enumerate(item))
