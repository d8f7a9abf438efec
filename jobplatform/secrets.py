"""Secrets from the environment or from files, as Docker secrets mount them.

``env_secret("NAME")`` is the value of ``NAME`` or, when ``NAME_FILE`` is set instead, the
content of the file it names (one trailing newline dropped, as ``echo`` and editors add one).
Setting both is a configuration error: which one wins would be a guess. An empty variable counts
as unset.

Plain Python, no Django: ``gunicorn.conf.py`` and ``flowerconfig.py`` import it before (or
without) the settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit


class SecretError(Exception):
    """A secret is set twice, or its file cannot be read."""


def env_secret(
    name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """``NAME`` from the environment, or the content of the file named by ``NAME_FILE``.

    Without a default (None), a secret that is set neither way raises SecretError.
    """
    environ = os.environ if environ is None else environ
    # Empty counts as unset: compose's env_file turns "NAME=" into an empty variable.
    value, path = environ.get(name) or None, environ.get(f"{name}_FILE") or None
    if value is not None and path:
        raise SecretError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretError(f"{name}_FILE={path}: {exc.strerror or exc}") from None
        return content.removesuffix("\n").removesuffix("\r")
    if value is not None:
        return value
    if default is None:
        raise SecretError(f"{name} (or {name}_FILE) must be set")
    return default


def url_with_password(url: str, password: str) -> str:
    """``url`` with its password replaced by ``password`` (percent-encoded), the user kept."""
    if not password:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
