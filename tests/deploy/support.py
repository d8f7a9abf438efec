"""What the deployment files' tests share: reading them, and checking that a container's command,
health check and variables exist in this project (not only in the file that names them)."""

from __future__ import annotations

import re
import shlex
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands
from django.urls import Resolver404, resolve

REPO = Path(__file__).resolve().parents[2]

# Flower's own pages (flower/urls.py) that a health check may use.
FLOWER_PATHS = {"/healthcheck"}


class ComposeLoader(yaml.SafeLoader):
    """PyYAML with compose's !reset and !override tags (the value as written)."""


def _as_written(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!override", _as_written)
ComposeLoader.add_constructor("!reset", _as_written)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 (a SafeLoader)


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def requirement_names() -> set[str]:
    names = set()
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower())
    return names


def settings_variables() -> set[str]:
    """Every environment variable jobplatform/settings.py reads."""
    source = (REPO / "jobplatform" / "settings.py").read_text()
    return set(re.findall(r"""env(?:_secret|\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))


def process_variables() -> set[str]:
    """The variables gunicorn.conf.py and flowerconfig.py read (the processes' own settings)."""
    names: set[str] = set()
    for name in ("gunicorn.conf.py", "flowerconfig.py"):
        source = (REPO / name).read_text()
        names |= set(
            re.findall(
                r"""(?:environ\.get|getenv|environ)\(?\[?\s*["']([A-Z][A-Z0-9_]*)["']""", source
            )
        )
    return names


def documented_variables() -> set[str]:
    """The variables named in docs/configuration.md's tables (first column)."""
    text = (REPO / "docs" / "configuration.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", text, flags=re.MULTILINE))


def flatten(command: str | list[str]) -> list[str]:
    """A compose or exec command as argv: a string is a shell line (CMD-SHELL, sh -c)."""
    if isinstance(command, str):
        return shlex.split(command)
    if command[:1] == ["CMD-SHELL"]:
        return shlex.split(command[1])
    if command[:1] == ["CMD"]:
        return list(command[1:])
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2])
    return list(command)


def celery_subcommands() -> set[str]:
    plugins = {ep.name for ep in entry_points(group="celery.commands")}
    return set(celery_cli.commands) | plugins


def check_url(url: str) -> None:
    """A health check's URL is served: a Django view (port 8000) or a page of Flower's."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", url  # the container itself
    if parts.port == 5555:
        assert parts.path in FLOWER_PATHS, url
        return
    assert parts.port == 8000, url
    try:
        resolve(parts.path)
    except Resolver404:
        raise AssertionError(f"no view answers {url}") from None


def check_command(argv: list[str], *, process_command: list[str] | None = None) -> None:
    """``argv`` runs something this project has. ``process_command``: the command of the
    container's own process, which a ``probe --process`` health check must name."""
    assert argv, "empty command"
    program, args = argv[0], argv[1:]
    if program in ("python", "python3") and args[:1] == ["manage.py"]:
        assert args[1] in get_commands(), f"no management command {args[1]!r}"
    elif program in ("python", "python3") and args[:2] == ["-m", "jobplatform.probe"]:
        import_module("jobplatform.probe")
        if args[2:3] == ["--process"]:
            assert process_command is not None, argv
            assert args[3] in " ".join(process_command), (args[3], process_command)
        else:
            (url,) = args[2:]
            check_url(url)
    elif program == "celery":
        assert "celery" in requirement_names()
        assert args[:2] == ["-A", "jobplatform"], argv
        # The first word past Celery's global options (--quiet: no start-up banner).
        subcommand = next(a for a in args[2:] if not a.startswith("-"))
        assert subcommand in celery_subcommands(), f"no celery command {subcommand!r}"
        if subcommand == "flower":
            assert "flower" in requirement_names()
        if subcommand == "beat":
            scheduler = next(a for a in args if a.startswith("--scheduler="))
            module, name = scheduler.split("=", 1)[1].split(":")
            assert hasattr(import_module(module), name), scheduler
    elif program == "gunicorn":
        assert "gunicorn" in requirement_names()
        module, name = args[0].split(":")
        assert callable(getattr(import_module(module), name)), args[0]
    else:
        raise AssertionError(f"unknown program in {argv}")
