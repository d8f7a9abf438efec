"""deploy/k8s read without a cluster: every manifest valid against the Kubernetes API's schemas
(kubernetes-validate ships them), every command and probe real, every variable a documented
setting, beat a single replica replaced rather than rolled, workers given their longest job."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from django.conf import settings

from tests.deploy.support import (
    REPO,
    check_command,
    check_url,
    documented_variables,
    flatten,
    load_yaml,
    load_yaml_all,
    process_variables,
    settings_variables,
)

K8S = REPO / "deploy" / "k8s"
KUSTOMIZATION = load_yaml(K8S / "kustomization.yaml")
DOCUMENTS = [doc for name in KUSTOMIZATION["resources"] for doc in load_yaml_all(K8S / name)]
KUBERNETES = "1.30.0"
DEPLOYMENTS = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
               for d in DOCUMENTS if d["kind"] == "Deployment"}  # fmt: skip
IMAGE = "registry.example.com/jobplatform"


CONFIGMAP = next(d for d in DOCUMENTS if d["kind"] == "ConfigMap")["data"]


def expand(part: str) -> str:
    """A command's argument as Kubernetes runs it: each $(VAR) from the ConfigMap."""
    return re.sub(r"\$\(([A-Z_]+)\)", lambda m: CONFIGMAP[m.group(1)], part)


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    template = document["spec"]["template"]
    return template["spec"]["containers"]


def test_the_kustomization_lists_every_manifest():
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk


@pytest.mark.parametrize(
    "document", DOCUMENTS, ids=[f"{d['kind']}-{d['metadata']['name']}" for d in DOCUMENTS]
)
def test_each_manifest_is_valid_against_the_api_schema(document):
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_a_deployment_per_long_running_role_and_a_migration_job():
    assert set(DEPLOYMENTS) == {"web", "dispatcher", "worker", "beat"}
    jobs = [d for d in DOCUMENTS if d["kind"] == "Job"]
    assert [flatten(c["command"]) for j in jobs for c in containers(j)] == [
        ["python", "manage.py", "migrate", "--noinput"]
    ]


@pytest.mark.parametrize("role", ["web", "dispatcher", "worker", "beat"])
def test_each_role_runs_a_real_command_with_a_real_probe(role):
    (container,) = containers(DEPLOYMENTS[role])
    command = [expand(part) for part in container["command"]]
    check_command(command)
    assert container["image"].startswith(f"{IMAGE}:") and not container["image"].endswith(":latest")
    assert "livenessProbe" in container
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        if "exec" in probe:
            argv = [part.replace('"', "") for part in flatten(probe["exec"]["command"])]
            check_command(argv, process_command=container["command"])
        elif "httpGet" in probe:
            check_url(f"http://127.0.0.1:8000{probe['httpGet']['path']}")
        else:
            assert probe["tcpSocket"]["port"] == "http"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert DEPLOYMENTS[role]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_the_workers_consume_every_queue_the_platform_publishes_to():
    """The job queues and the callbacks' and webhooks' queue: a queue no worker consumes keeps
    its messages in the broker for ever."""
    (container,) = containers(DEPLOYMENTS["worker"])
    (queues,) = [expand(p).split("=", 1)[1] for p in container["command"] if "--queues" in p]
    published = {
        *CONFIGMAP["JOBPLATFORM_QUEUES"].split(","),
        CONFIGMAP["JOBPLATFORM_WEBHOOK_QUEUE"],
    }
    assert published <= set(queues.split(","))


def test_web_is_ready_only_when_the_database_and_broker_answer():
    (container,) = containers(DEPLOYMENTS["web"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/"
    # Liveness does not depend on PostgreSQL: an outage must not restart every web pod.
    assert "tcpSocket" in container["livenessProbe"]


def test_beat_is_one_replica_replaced_not_rolled():
    beat = DEPLOYMENTS["beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}


def test_a_worker_pod_is_given_the_longest_job_to_stop():
    spec = DEPLOYMENTS["worker"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= settings.JOBPLATFORM_MAX_JOB_TIMEOUT


def test_workers_scale_on_the_queue_backlog():
    (hpa,) = [d for d in DOCUMENTS if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == DEPLOYMENTS["worker"]["metadata"]["name"]
    names = {m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    assert names == {"jobplatform_queue_jobs", "jobplatform_queue_oldest_due_age_seconds"}


def test_the_configmap_holds_documented_settings_and_secrets_only_as_files():
    (configmap,) = [d for d in DOCUMENTS if d["kind"] == "ConfigMap"]
    # Read by the settings, gunicorn.conf.py, or a command's $(VAR) (expanded by Kubernetes).
    commands = " ".join(" ".join(c["command"]) for d in DEPLOYMENTS.values() for c in containers(d))
    read = (
        settings_variables() | process_variables() | set(re.findall(r"\$\(([A-Z_]+)\)", commands))
    )
    documented = documented_variables()
    for key, value in configmap["data"].items():
        setting = key.removesuffix("_FILE")
        assert setting in read and setting in documented, key
        if key.endswith("_FILE"):
            assert value.startswith("/run/secrets/"), key
        assert "PASSWORD" not in key or key.endswith("_FILE"), key
    for document in DEPLOYMENTS.values():
        (container,) = containers(document)
        assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/run/secrets"]["readOnly"] is True
