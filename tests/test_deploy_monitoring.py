"""deploy/: the alert rules pass promtool (syntax and their own unit tests), the Grafana dashboard is a valid
dashboard document, and every series the rules and panels read is one the code exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# the parts of a Grafana dashboard (schemaVersion 39) this project relies on
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
            "properties": {
                "id": {"type": "integer"},
                "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                "gridPos": {"type": "object", "required": ["x", "y", "w", "h"],
                            "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 23},
                                           "w": {"type": "integer", "minimum": 1, "maximum": 24}}},
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr"],
                    "properties": {"expr": {"type": "string", "minLength": 1}}}},
            }}},
    },
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs promtool (Debian package prometheus; .ci/run installs it)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


def exported_series() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "proofmarket").rglob("*.py"):
        names |= set(re.findall(r'"(proofmarket_[a-z0-9_]+)"', path.read_text()))
    out = set(names)
    for name in names:  # histogram and counter series
        out |= {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_total"}
    return out | {"up"}


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(proofmarket_[a-z0-9_]+|up)\b(?=\s*[{\[)\s<>=]|$)", expr))


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus", capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert f"SUCCESS: {sum(len(g['rules']) for g in rules['groups'])} rules found" in check.stdout  # each one read
    tests = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus",
                           capture_output=True, text=True, timeout=60)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for name in ("prometheus.yml", "compose.yml"):  # the standalone configuration and the compose file's
        config = subprocess.run([tool, "check", "config", name], cwd=DEPLOY / "prometheus",
                                capture_output=True, text=True, timeout=60)
        assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_cover_what_operators_must_hear_of() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for needed in ("ProofmarketNodeDown", "ProofmarketQueueBacklog", "ProofmarketSettlementPendingTooLong",
                   "ProofmarketSettlerLeaseLost", "ProofmarketValidatorStale", "ProofmarketValidatorLowStake",
                   "ProofmarketProofFailures", "ProofmarketLedgerDifferences", "ProofmarketValidatorCannotJudge"):
        assert needed in names


def test_every_series_the_rules_and_dashboard_read_is_exported() -> None:
    exported = exported_series()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "proofmarket.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    read = set().union(*(series_in(e) for e in exprs))
    assert read and read <= exported, sorted(read - exported)


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "proofmarket.json").read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    assert any("model" in t["expr"] for p in dashboard["panels"] for t in p["targets"])  # per-model panels


def test_the_alertmanager_route_pages_the_critical_alerts_and_every_alert_is_routed() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "alertmanager.yml").read_text())
    critical = next(r for r in config["route"]["routes"] if 'severity="critical"' in r["matchers"])
    assert critical["receiver"] == "on-call" and config["route"]["receiver"] == "team"
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["labels"]["severity"] for r in rules} <= {"critical", "warning"}
    assert {"ProofmarketNoWorkers", "ProofmarketLowGas", "ProofmarketRpcFailing", "ProofmarketEscrowFailures",
            "ProofmarketLedgerDifferences", "ProofmarketInsolvent"} <= {r["alert"] for r in rules}
    amtool = shutil.which("amtool")
    if amtool is not None:
        checked = subprocess.run([amtool, "check-config", str(DEPLOY / "prometheus" / "alertmanager.yml")],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
