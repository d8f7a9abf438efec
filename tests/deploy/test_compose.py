"""docker-compose.yml (and its RabbitMQ override) read as an operator would, with no Docker
engine: every service's command and health check exist in the project, every variable is a
documented setting, every secret comes from a Docker secret, every image is pinned."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.support import (
    REPO,
    check_command,
    documented_variables,
    flatten,
    load_yaml,
    process_variables,
    settings_variables,
)

COMPOSE = load_yaml(REPO / "docker-compose.yml")
RABBITMQ = load_yaml(REPO / "docker-compose.rabbitmq.yml")
SERVICES: dict[str, Any] = COMPOSE["services"]
APP = ["migrate", "web", "dispatcher", "worker", "beat", "flower"]
LONG_RUNNING = [name for name in SERVICES if name != "migrate"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH|TOKEN")
PINNED = re.compile(r"^[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9]+)?$|^[a-z0-9./-]+:\d+\.\d+-[a-z]+$")


def seconds(duration: str) -> int:
    """A compose duration (1h, 90s, 1m30s) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def defaulted(value: str) -> str:
    """``${NAME:-default}`` → default: what compose uses when .env does not set it."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_services_are_the_platforms_processes_and_its_stores():
    assert set(SERVICES) == {"postgres", "redis", *APP}


@pytest.mark.parametrize("name", APP)
def test_each_application_command_exists_in_the_project(name):
    command = [defaulted(part) for part in SERVICES[name]["command"]]
    check_command(command)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_each_long_running_service_has_a_health_check_on_a_real_probe(name):
    service = SERVICES[name]
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    for key in ("interval", "timeout", "retries"):
        assert key in service["healthcheck"], (name, key)
    assert seconds(service["healthcheck"]["timeout"]) <= seconds(service["healthcheck"]["interval"])
    if name in APP:
        argv = [part.replace("$$", "$") for part in flatten(test)]
        check_command(argv, process_command=service["command"])


def test_the_web_and_flower_checks_probe_their_own_ports():
    assert SERVICES["web"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/api/v1/health/"
    assert SERVICES["flower"]["healthcheck"]["test"][-1] == "http://127.0.0.1:5555/healthcheck"


def test_the_worker_is_pinged_under_the_name_it_runs_with():
    argv = flatten(SERVICES["worker"]["healthcheck"]["test"])
    destination = argv[argv.index("--destination") + 1]
    assert destination == "worker@$$HOSTNAME"
    assert "--hostname=worker@%h" in SERVICES["worker"]["command"]  # %h: the container's host name


def test_the_worker_consumes_every_queue_the_platform_publishes_to():
    """The job queues and the callbacks' and webhooks' queue, at the settings' defaults
    (jobplatform/settings.py; the tests' own settings name other queues)."""
    (queues,) = [defaulted(p).split("=", 1)[1] for p in SERVICES["worker"]["command"]
                 if p.startswith("--queues")]  # fmt: skip
    published = {"default", "webhooks"}
    assert published <= set(queues.split(","))


def test_the_migration_is_a_one_shot_that_every_process_waits_for():
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in APP[1:]:
        assert SERVICES[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_each_service_restarts_has_limits_and_a_pinned_image(name):
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"])
    if "build" not in service:
        assert PINNED.match(service["image"]), service["image"]


def test_the_application_image_tag_is_chosen_not_floating():
    assert SERVICES["web"]["image"] == "jobplatform:${JOBPLATFORM_IMAGE_TAG:-latest}"
    assert PINNED.match(RABBITMQ["services"]["rabbitmq"]["image"])


def test_a_worker_is_given_the_time_of_the_longest_job_to_stop():
    from django.conf import settings

    grace = SERVICES["worker"]["stop_grace_period"]
    assert grace == "${WORKER_STOP_GRACE_PERIOD:-1h}"
    # The default outlasts the longest job a submission may ask for.
    assert seconds(defaulted(grace)) >= settings.JOBPLATFORM_MAX_JOB_TIMEOUT
    assert seconds(SERVICES["web"]["stop_grace_period"]) > 30  # gunicorn's graceful timeout
    assert seconds(SERVICES["postgres"]["stop_grace_period"]) >= 30


def test_beat_is_one_replica_and_workers_and_dispatchers_scale():
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    for name in ("worker", "dispatcher"):
        # --scale refuses services with a fixed container name or a fixed published port.
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]


def test_redis_has_a_password_an_append_only_file_and_no_eviction():
    script = SERVICES["redis"]["entrypoint"][2]
    assert "requirepass" in script and "/run/secrets/redis_password" in script
    assert "appendonly yes" in script
    assert "maxmemory-policy noeviction" in script
    assert "REDISCLI_AUTH" in SERVICES["redis"]["healthcheck"]["test"][1]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return service.get("environment", {}) or {}


@pytest.mark.parametrize(
    ("name", "service"),
    [*SERVICES.items(), *RABBITMQ["services"].items()],
    ids=[*SERVICES, *(f"rabbitmq-{n}" for n in RABBITMQ["services"])],
)
def test_every_secret_comes_from_a_docker_secret_file(name, service):
    secrets = {**COMPOSE["secrets"], **RABBITMQ["secrets"]}
    for key, value in _environment(service).items():
        if SECRET_NAME.search(key):
            assert key.endswith("_FILE"), f"{name}: {key} set in clear"
            secret = value.removeprefix("/run/secrets/")
            assert value == f"/run/secrets/{secret}" and secret in service["secrets"], (name, key)
            assert secrets[secret] == {"file": f"./secrets/{secret}"}


def test_every_variable_is_a_documented_setting():
    documented = documented_variables()
    read = settings_variables() | process_variables() | {"JOBPLATFORM_FLOWER_AUTH"}  # flowerconfig
    text = (REPO / "docker-compose.yml").read_text() + (
        REPO / "docker-compose.rabbitmq.yml"
    ).read_text()
    # Interpolated from .env by compose itself.
    for variable in re.findall(r"\$\{([A-Z_]+)(?::-[^}]*)?\}", text):
        assert variable in documented, f"${{{variable}}} is not in docs/configuration.md"
    # Given to the application: a setting it reads, documented.
    for name in APP:
        for source in (SERVICES[name], RABBITMQ["services"].get(name, {})):
            for key in _environment(source):
                setting = key.removesuffix("_FILE")
                assert setting in read, f"{name}: {key} is read by no setting"
                assert setting in documented, f"{name}: {key} is not in docs/configuration.md"


def test_no_setting_is_undocumented():
    missing = settings_variables() - documented_variables()
    assert not missing, f"read by jobplatform/settings.py, not in docs/configuration.md: {missing}"


def test_the_rabbitmq_override_moves_the_broker_of_every_process():
    services = RABBITMQ["services"]
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    assert "consumer_timeout" in rabbitmq["entrypoint"][2]
    for name in APP:
        env = _environment(services[name])
        assert env["BROKER_URL"].startswith("amqp://jobplatform@rabbitmq:5672/")
        assert env["BROKER_PASSWORD_FILE"] == "/run/secrets/rabbitmq_password"
        depends = services[name]["depends_on"]
        if name != "migrate":
            # Redis stays for Django's cache (the throttles' counts).
            for store in ("postgres", "redis", "rabbitmq"):
                assert depends[store] == {"condition": "service_healthy"}, (name, store)
