"""Alerts (promtool check + unit tests), scraping, the adapter rule and the Grafana dashboard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import K8S, Rendered, containers, pod_labels, selector_matches
from tests.deploy.promql import (
    EXTERNAL_METRICS,
    check_expressions,
    exported_sample_names,
    promtool,
    referenced_metrics,
)
from tests.deploy.test_autoscaling import adapter_rules

MONITORING = K8S / "base" / "monitoring"
ALERT_TESTS = MONITORING / "tests" / "speech-alerts.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "speech-platform.json"
REQUIRED_ALERTS = {
    "SpeechBatcherQueueFull", "SpeechBatcherBacklog", "SpeechHighErrorRate",
    "SpeechSynthesizeLatencyHigh", "SpeechTranscribeLatencyHigh", "SpeechRedisDown",
    "SpeechCacheBreakerOpen", "SpeechWorkersStuck", "SpeechSustainedRefusals",
}
#: Grafana variables, replaced by plain values so promtool can parse the panel queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "speech"}


def rule_groups(overlay: Rendered) -> list[dict]:
    (rule,) = overlay.of_kind("PrometheusRule")
    groups: list[dict] = rule["spec"]["groups"]
    return groups


def alerts(overlay: Rendered) -> list[dict]:
    return [r for g in rule_groups(overlay) for r in g["rules"] if "alert" in r]


@pytest.fixture()
def rules_dir(overlay: Rendered, tmp_path: Path) -> Path:
    """The rendered PrometheusRule as a plain rules file, beside a copy of its unit tests."""
    (tmp_path / "speech-alerts.rules.yaml").write_text(
        yaml.safe_dump({"groups": rule_groups(overlay)}, sort_keys=False)
    )
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    return tmp_path


def test_promtool_accepts_the_rules(rules_dir: Path) -> None:
    result = promtool("check", "rules", "speech-alerts.rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in result.stdout


def test_alert_unit_tests_pass(rules_dir: Path) -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_can_fail(rules_dir: Path) -> None:
    """The unit tests have teeth: a rule with a broken threshold makes them fail."""
    path = rules_dir / "speech-alerts.rules.yaml"
    path.write_text(path.read_text().replace(") > 0.05", ") > 0.5"))
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=rules_dir)
    assert result.returncode != 0
    assert "SpeechHighErrorRate" in result.stdout + result.stderr


def test_every_alert_is_tested_and_complete(overlay: Rendered) -> None:
    tested = {case["alertname"]
              for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    names = {a["alert"] for a in alerts(overlay)}
    assert names == REQUIRED_ALERTS
    assert tested == names
    for alert in alerts(overlay):
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert alert.get("for"), alert["alert"]


def test_alerts_use_only_metrics_that_exist(overlay: Rendered) -> None:
    known = exported_sample_names() | EXTERNAL_METRICS
    for alert in alerts(overlay):
        used = referenced_metrics(alert["expr"])
        assert used, alert["alert"]
        assert used <= known, (alert["alert"], used - known)


def test_pod_monitor_scrapes_every_pod_with_a_metrics_port(overlay: Rendered) -> None:
    (monitor,) = overlay.of_kind("PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    scraped = 0
    for workload in overlay.workloads():
        assert selector_matches(selector, pod_labels(workload)), workload["metadata"]["name"]
        for container in containers(workload):
            ports = {p["name"] for p in container.get("ports", [])}
            scraped += endpoint["port"] in ports
    # every speech container and each Redis pod's exporter
    assert scraped == len(list(overlay.workloads()))


def test_adapter_queries_parse(tmp_path: Path) -> None:
    expressions = {}
    for rule in adapter_rules():
        query = (rule["metricsQuery"]
                 .replace("<<.Series>>", rule["seriesQuery"].split("{", 1)[0])
                 .replace("<<.LabelMatchers>>", 'namespace="speech",pod=~"stt-.*"')
                 .replace("<<.GroupBy>>", "pod"))
        expressions[rule["name"]["as"]] = query
    result = check_expressions(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_targets() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            targets[f"{panel['id']}_{target['refId']}"] = target["expr"]
    return targets


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_queries_parse_and_use_existing_metrics(tmp_path: Path) -> None:
    targets = dashboard_targets()
    expressions = {}
    for key, expr in targets.items():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr.replace("$1", ""), f"unknown variable in {expr}"
        expressions[key] = expr
    result = check_expressions(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    known = exported_sample_names() | EXTERNAL_METRICS
    used = set().union(*(referenced_metrics(e) for e in expressions.values()))
    assert used <= known, used - known
    # the dashboard shows the autoscaling signal and every alert's main metric family
    for name in ("speech_batcher_pending", "speech_requests_total", "redis_key_size",
                 "speech_cache_breaker_open", "speech_jobs_running"):
        assert name in used


def test_dashboard_ships_as_a_grafana_sidecar_configmap(overlay: Rendered) -> None:
    config_map = overlay.get("ConfigMap", "speech-platform-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["speech-platform.json"]) == json.loads(
        DASHBOARD.read_text()
    )
