"""The generated Prometheus rules, checked by the real promtool: syntax (`check rules`), and
behaviour (`test rules` on the scenarios in tests/promtool/, a firing and a silent case for
every alert, hand-computed values for the recording rules)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vidrec.config import AlertConfig, MonitoringConfig
from vidrec.monitoring import rules
from vidrec.serving.metrics import LATENCY_BUCKETS

PROMTOOL_TESTS = Path(__file__).parents[1] / "promtool"
SCENARIOS = sorted(p.name for p in PROMTOOL_TESTS.glob("*.yml"))

# Small windows keep the promtool series short; the scenario files assume exactly these.
CONFIG = MonitoringConfig(
    scrape_interval_s=60,
    sustained_windows=3,
    interval_s=60,
    alerts=AlertConfig(
        rule_window_s=120,
        alert_for_s=60,
        slo_long_window_s=600,
        ctr_window_s=180,
        ctr_baseline_window_s=600,
        max_model_age_s=600,
    ),
)


@pytest.fixture(scope="module")
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run `make sysdeps` (Debian package prometheus)")
    return exe


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The generated rules.yml with the scenario files next to it (they name it relatively)."""
    (tmp_path / rules.RULES_FILE).write_text(rules.rules_yaml(CONFIG))
    for name in SCENARIOS:
        shutil.copy(PROMTOOL_TESTS / name, tmp_path / name)
    return tmp_path


def run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"


def test_promtool_accepts_the_rules(promtool: str, rules_dir: Path) -> None:
    run([promtool, "check", "rules", rules.RULES_FILE], rules_dir)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_promtool_scenarios(promtool: str, rules_dir: Path, scenario: str) -> None:
    run([promtool, "test", "rules", scenario], rules_dir)


def test_every_alert_has_a_firing_and_a_silent_scenario() -> None:
    cases: dict[str, set[bool]] = {}
    for name in SCENARIOS:
        for group in yaml.safe_load((PROMTOOL_TESTS / name).read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    alerts = [r["alert"] for r in rules.alert_rules(CONFIG)]
    assert {a: cases.get(a, set()) for a in alerts} == {a: {True, False} for a in alerts}


def test_recording_rules_are_tested_and_named_level_metric_operations() -> None:
    names = [r["record"] for r in rules.recording_rules(CONFIG)]
    assert all(re.fullmatch(r"[a-z]+:vidrec_[a-z_]+:[a-z0-9_]+", n) for n in names), names
    tested = "\n".join((PROMTOOL_TESTS / n).read_text() for n in SCENARIOS)
    assert [n for n in names if f"expr: {n}" not in tested and f"({n}," not in tested] == []


def test_alerts_carry_severity_and_annotations() -> None:
    for rule in rules.alert_rules(CONFIG):
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert set(rule["annotations"]) == {"summary", "description"}


def test_latency_slo_must_be_a_bucket_edge() -> None:
    bad = CONFIG.model_copy(update={"alerts": AlertConfig(latency_slo_s=0.2)})
    with pytest.raises(ValueError, match=r"monitoring\.alerts\.latency_slo_s: 0\.2"):
        rules.rules_yaml(bad)


def test_slo_bucket_is_spelled_as_prometheus_client_exposes_it() -> None:
    assert rules.slo_bucket(AlertConfig(latency_slo_s=0.1)) == "0.1"
    assert rules.slo_bucket(AlertConfig(latency_slo_s=1)) == "1.0"


def test_a_burn_threshold_that_can_never_fire_is_rejected() -> None:
    bad = CONFIG.model_copy(update={"alerts": AlertConfig(burn_rate=200, latency_objective=0.99)})
    with pytest.raises(ValueError, match="burn_rate"):
        rules.alert_rules(bad)


def test_latency_buckets_match_the_serving_histogram() -> None:
    assert rules.LATENCY_BUCKETS == LATENCY_BUCKETS


def test_prometheus_config_scrapes_serving_and_monitor() -> None:
    cfg = MonitoringConfig(scrape_interval_s=5, serving_target="serve:8080", monitor_port=9300)
    conf = rules.prometheus_config(cfg, ["rules.yml"], None)
    assert conf["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    assert conf["rule_files"] == ["rules.yml"]
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert jobs["vidrec-serving"]["static_configs"] == [{"targets": ["serve:8080"]}]
    assert jobs["vidrec-monitor"]["static_configs"] == [{"targets": ["127.0.0.1:9300"]}]
    assert {j["metrics_path"] for j in jobs.values()} == {"/metrics"}
    moved = rules.prometheus_config(cfg, [], "monitor:9201")["scrape_configs"][1]
    assert moved["static_configs"] == [{"targets": ["monitor:9201"]}]


def test_written_files_pass_promtool_check_config(promtool: str, tmp_path: Path) -> None:
    paths = rules.write_prometheus_files(CONFIG, tmp_path / "prom")
    assert set(paths) == {"prometheus.yml", "rules.yml"}
    # check config also loads and checks the rule files it names
    run([promtool, "check", "config", str(paths["prometheus.yml"])], tmp_path)
