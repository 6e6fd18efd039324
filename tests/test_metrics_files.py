"""The files an operator takes for monitoring: the Grafana dashboard and the Prometheus alert
rules under contrib/, and the one metrics port the docs give (issue 14, "Metrics").

Every query is parsed by a real PromQL parser (promql-parser), and every metric name it uses
must be one that /metrics serves, scraped over real HTTP; the daemon test
(test_daemon_metrics.py) checks the same names against a running daemon. With promtool on the
PATH (Debian's `prometheus` package), the rules are also checked and unit-tested by it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_metrics import SNAP, fetch

from exrwatchd.config import load_config
from exrwatchd.errors import ConfigError
from exrwatchd.telemetry import Metrics, MetricsServer

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "contrib" / "grafana-dashboard.json"
ALERTS = ROOT / "contrib" / "prometheus-alerts.yml"
ALERT_TESTS = ROOT / "contrib" / "prometheus-alerts.test.yml"

#: Series Prometheus makes itself, not the daemon.
PROMETHEUS_SERIES = {"up"}

# Grafana's variables, replaced by what they stand for before parsing.
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*"}


# ---- PromQL ---------------------------------------------------------------------------------


def _selectors(node: Any) -> Iterator[str]:
    """The metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    if isinstance(node, promql_parser.MatrixSelector):
        yield from _selectors(node.vector_selector)
        return
    for child in ("lhs", "rhs", "expr", "param"):
        if getattr(node, child, None) is not None:
            yield from _selectors(getattr(node, child))
    for arg in getattr(node, "args", None) or ():
        yield from _selectors(arg)


def metric_names(expr: str) -> set[str]:
    """Names an expression reads; a syntax error fails with the expression in the message."""
    for var, stands_for in _GRAFANA_VARS.items():
        expr = expr.replace(var, stands_for)
    try:
        tree = promql_parser.parse(expr)
    except Exception as exc:  # the parser raises its own error types
        raise AssertionError(f"not valid PromQL: {expr!r}: {exc}") from exc
    names = set(_selectors(tree))
    assert names, f"reads no metric: {expr!r}"
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", ())]
    for var in doc["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict) and "label_values(" in query["query"]:
            # label_values(metric, label): the metric must exist for the variable to fill.
            exprs.append(query["query"].split("(", 1)[1].split(",", 1)[0])
    return exprs


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> the files that use it."""
    used: dict[str, set[str]] = {}
    for file, exprs in ((ALERTS.name, [r["expr"] for r in alert_rules()]),
                        (DASHBOARD.name, dashboard_exprs())):  # fmt: skip
        for expr in exprs:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(file)
    return used


def served_names(text: str) -> set[str]:
    """Every sample name in a /metrics answer, and each histogram's base name."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        if family.type == "histogram":
            names.add(family.name)
    return names


def missing_names(text: str) -> dict[str, set[str]]:
    """Names the contrib files use that the /metrics answer `text` does not serve."""
    served = served_names(text) | PROMETHEUS_SERIES
    return {name: files for name, files in used_metric_names().items() if name not in served}


# ---- the files ------------------------------------------------------------------------------


def test_every_metric_the_files_use_is_served() -> None:
    metrics = Metrics(lambda: SNAP)
    server = MetricsServer("127.0.0.1:0", metrics)
    server.start()
    try:
        status, text, _ = fetch("http://{}:{}/metrics".format(*server.address))
    finally:
        server.stop()
    assert status == 200
    assert missing_names(text) == {}
    used = used_metric_names()
    assert {"exrwatchd_healthy", "process_resident_memory_bytes"} <= set(used)
    assert len(used) >= 30, sorted(used)


def test_missing_names_are_caught() -> None:
    # The check above can fail: a name the daemon does not serve is reported with its file.
    text = "# TYPE exrwatchd_persisted_total counter\nexrwatchd_persisted_total 1\n"
    missing = missing_names(text)
    assert missing["exrwatchd_healthy"] == {ALERTS.name, DASHBOARD.name}
    assert "up" not in missing


def test_the_alert_rules_load_and_cover_what_operators_page_on() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "ticket"), rule
        assert rule["annotations"]["summary"], rule
        metric_names(rule["expr"])
    expected = {
        "ExrwatchdDown": "up",
        "ExrwatchdUnhealthy": "exrwatchd_healthy",
        "ExrwatchdSinkFailing": "exrwatchd_sink_unhealthy_seconds",
        "ExrwatchdDeadLetters": "exrwatchd_outbox_entries",
        "ExrwatchdJournalDiskFull": "exrwatchd_journal_disk_full_seconds",
        "ExrwatchdEventsLost": "exrwatchd_events_lost_total",
        "ExrwatchdBacklogGrowing": "exrwatchd_outbox_entries",
        "ExrwatchdHookDeadLetters": "exrwatchd_hook_entries",
    }
    by_name = {r["alert"]: r for r in rules}
    for alert, metric in expected.items():
        assert metric in metric_names(by_name[alert]["expr"]), alert


def test_the_dashboard_loads() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "exrwatchd" and doc["title"] == "exrwatchd"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [p for p in doc["panels"] if p["type"] != "row"]
    assert len(graphs) >= 25
    for panel in graphs:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            metric_names(target["expr"])
    titles = " ".join(p["title"] for p in graphs)
    for shown in ("Healthy", "Dead letters", "Journal disk full", "End to end", "Outbox"):
        assert shown in titles


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        run = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


def test_the_docs_point_to_the_files() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    for file in (DASHBOARD, ALERTS, ALERT_TESTS):
        assert str(file.relative_to(ROOT)) in text, file.name


# ---- one port ---------------------------------------------------------------------------------

# 9100 is node_exporter's port, on the same gateways: "127.0.0.1:9100", "[::1]:9100", "port 9100".
_NODE_EXPORTER_PORT = re.compile(r"(:|\bport\b\D{0,3})9100\b", re.IGNORECASE)


def test_one_metrics_port_and_not_node_exporters() -> None:
    files = [
        ROOT / "README.md",
        ROOT / "config.example.toml",
        *sorted((ROOT / "docs").glob("**/*.md")),
        *sorted((ROOT / "contrib").iterdir()),
    ]
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
            for f in files for n, line in enumerate(f.read_text().splitlines(), 1)
            if _NODE_EXPORTER_PORT.search(line)]  # fmt: skip
    assert hits == []
    example = (ROOT / "config.example.toml").read_text()
    assert 'listen = "127.0.0.1:9109"' in example
    assert "127.0.0.1:9109" in (ROOT / "README.md").read_text()


def test_the_config_error_gives_the_metrics_port(tmp_path: Path) -> None:
    for bad in ("9109", "::1:9109"):
        path = tmp_path / "c.toml"
        path.write_text(f'[metrics]\nlisten = "{bad}"\n')
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        message = str(info.value)
        assert "metrics.listen" in message and ":9109" in message, message
        assert "9100" not in message, message
