"""The alert rules and the Grafana dashboard in docs/monitoring/ parse, and ask only for metrics
and labels the platform exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
import yaml
from django.conf import settings
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from jobplatform import metrics
from jobplatform.liveness import ProcessIdentity, process_beat
from tests.conftest import REPO

pytestmark = pytest.mark.django_db

MONITORING = REPO / "docs" / "monitoring"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@pytest.fixture
def exported(client) -> dict[str, set[str]]:
    """Every series name /metrics can answer, with the labels it may carry."""
    process_beat(process=ProcessIdentity.here("worker", name="w@h"))  # a heartbeat age sample
    bearer = f"Bearer {settings.JOBPLATFORM_METRICS_TOKEN}"
    text = client.get("/metrics", HTTP_AUTHORIZATION=bearer).content.decode()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        names = [family.name + s for s in SUFFIXES.get(family.type, ("",))] + [family.name]
        found = {label for sample in family.samples for label in sample.labels}
        for name in names:
            labels.setdefault(name, set()).update(found)
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for name, known in labels.items():
                if name.startswith(metric._name):
                    known.update(metric._labelnames)
    return labels


def selectors(node: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector of a PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from selectors(node.expr)
        if node.param is not None:
            yield from selectors(node.param)
    elif isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        yield from selectors(node.expr)


def check(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """The metric names of ``expr``; fails on a metric or label /metrics does not have."""
    names = []
    for selector in selectors(promql_parser.parse(expr)):
        assert selector.name in exported, f"{selector.name} is not exported ({expr})"
        used = {m.name for m in selector.matchers.matchers}
        assert used <= exported[selector.name], f"{selector.name}: labels {used} ({expr})"
        names.append(selector.name)
    assert names, f"no metric in {expr}"
    return names


def test_every_alert_rule_parses_and_uses_exported_metrics(exported):
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    [group] = rules["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    used = set()
    for rule in alerts.values():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        used.update(check(rule["expr"], exported))
    # What issue #20 asks the rules to watch.
    assert {
        "JobplatformHighFailureRate",
        "JobplatformOldestDueJob",
        "JobplatformOpenDeadLetters",
        "JobplatformNoWorker",
        "JobplatformNoDispatcher",
    } <= set(alerts)
    assert {
        "jobplatform_attempts_finished_total",
        "jobplatform_queue_oldest_due_age_seconds",
        "jobplatform_dead_letters_open",
        "jobplatform_processes_alive",
    } <= used


def test_every_dashboard_panel_parses_and_uses_exported_metrics(exported):
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 15
    for expr in exprs:
        # Grafana's variables, as Grafana fills them in.
        for variable in re.findall(r"\$(\w+)", expr):
            assert variable in variables | {"__rate_interval"}, variable
        check(expr.replace("$__rate_interval", "5m").replace("$queue", ".*"), exported)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
