"""The dashboards as declared: every query is valid PromQL (promtool parses it), names only
metrics the code exports or the rules record, and lays out as Grafana expects. Whether
each query returns data is tested on a real stack (tests/integration/test_dashboards.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from vidrec.config import MonitoringConfig
from vidrec.deploy import dashboards
from vidrec.deploy.dashboards import DASHBOARDS, Query, expr, grafana
from vidrec.deploy.preview import Drawn, current, legend, summary
from vidrec.monitoring import rules
from vidrec.monitoring.metrics import MonitorMetrics
from vidrec.monitoring.prometheus import Series
from vidrec.pipeline.metrics import PipelineCollector
from vidrec.rollout.metrics import RolloutMetrics
from vidrec.serving.metrics import ServingMetrics

ROOT = Path(__file__).parents[2]
QUERIES = [(d.uid, p.title, q) for d in DASHBOARDS for p in d.panels for q in p.queries]
# a metric or recorded-series name: vidrec_..., or level:vidrec_...:operations
NAME = re.compile(r"\b(?:\w+:)?vidrec_\w+(?::\w+)?")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names(tmp: Path) -> set[str]:
    """Every series name the serving, monitor, rollout and pipeline code can export."""
    run = {"pipeline": "training", "status": "ok", "seconds": 1.0, "steps": []}
    (tmp / "run.json").write_text(json.dumps(run))
    names = set()
    pipeline = _registry(PipelineCollector([tmp]))
    for registry in (ServingMetrics().registry, MonitorMetrics().registry,
                     RolloutMetrics().registry, pipeline):  # fmt: skip
        for family in registry.collect():
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def _registry(collector: PipelineCollector) -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(collector)
    return r


def test_every_query_names_only_exported_or_recorded_series(tmp_path: Path) -> None:
    known = exported_names(tmp_path) | {
        r["record"] for r in rules.recording_rules(MonitoringConfig())
    }
    unknown = {
        (uid, title, name)
        for uid, title, q in QUERIES
        for name in NAME.findall(q.expr)
        if name not in known
    }
    assert not unknown, f"queries name series nothing exports: {sorted(unknown)}"


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make sysdeps` (Debian package prometheus)")
    group = [{"record": f"dashboard:query_{i}:check", "expr": expr(q, "1m")}
             for i, (_, _, q) in enumerate(QUERIES)]  # fmt: skip
    text = yaml.safe_dump({"groups": [{"name": "q", "rules": group}]})
    (tmp_path / "queries.yml").write_text(text)
    done = subprocess.run([promtool, "check", "rules", "queries.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(QUERIES)} rules found" in done.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: a query with an unbalanced parenthesis is refused."""
    promtool = shutil.which("promtool") or pytest.fail("promtool is not installed")
    bad = {"groups": [{"name": "q", "rules": [{"record": "a:b:c", "expr": "sum(rate(x[1m])"}]}]}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    done = subprocess.run([promtool, "check", "rules", "bad.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0


def test_every_rate_uses_grafanas_window() -> None:
    """A hard-coded rate window would break when the scrape interval changes."""
    fixed = [(uid, t, q.expr) for uid, t, q in QUERIES if re.search(r"\[\d+[smh]\]", q.expr)]
    assert not fixed


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_grafana_json_layout(d: dashboards.Dashboard) -> None:
    g = grafana(d)
    ids = [p["id"] for p in g["panels"]]
    assert len(set(ids)) == len(ids) == len(d.panels)
    cells = set()
    for p in g["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for dx in range(pos["w"]):
            for dy in range(pos["h"]):
                cell = (pos["x"] + dx, pos["y"] + dy)
                assert cell not in cells, f"{p['title']} overlaps another panel"
                cells.add(cell)
        assert p["datasource"]["uid"] == "${datasource}"
        assert [t["refId"] for t in p["targets"]] == [chr(65 + i) for i in range(len(p["targets"]))]
    assert g["templating"]["list"][0]["type"] == "datasource"


def test_uids_and_titles_are_unique() -> None:
    assert len({d.uid for d in DASHBOARDS}) == len({d.title for d in DASHBOARDS}) == 4
    for d in DASHBOARDS:
        titles = [p.title for p in d.panels]
        assert len(set(titles)) == len(titles), d.uid


def test_committed_dashboards_are_the_generated_ones() -> None:
    for name, text in dashboards.files().items():
        for where in (ROOT / "dashboards", ROOT / "charts/vidrec/files/dashboards"):
            assert (where / name).read_text() == text, f"{where / name}: run vidrec chart generate"


def test_legend_and_empty_panels() -> None:
    assert legend("{{variant}} v{{ version }}", {"variant": "champion", "version": "3"}) == (
        "champion v3"
    )
    assert legend("{{missing}} x", {}) == "x"
    panel = DASHBOARDS[0].panels[0]
    nan = Series({"variant": "champion"}, [(0.0, float("nan"))])
    some = Series({"variant": "champion"}, [(0.0, float("nan")), (1.0, 2.0)])
    out = summary([Drawn(panel, [("a", nan)]), Drawn(DASHBOARDS[0].panels[1], [("a", some)])])
    assert out["empty"] == [panel.title]  # NaN only is no data
    assert out["panels"][DASHBOARDS[0].panels[1].title] == {"series": 1, "points": 1}


def test_expr_replaces_every_rate_window() -> None:
    q = Query("rate(x[$__rate_interval]) / rate(y[$__rate_interval])", "")
    assert expr(q, "30s") == "rate(x[30s]) / rate(y[30s])"


def test_a_stat_shows_only_the_series_current_at_the_end() -> None:
    ended = Series({"status": "running"}, [(0.0, 1.0), (5.0, 1.0)])
    now = Series({"status": "ok"}, [(5.0, float("nan")), (10.0, 1.0)])
    assert current([("running", ended), ("ok", now)]) == [("ok", 1.0)]
    assert current([("none", Series({}, [(0.0, float("nan"))]))]) == []
