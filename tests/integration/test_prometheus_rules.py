"""The generated config and rules in a real Prometheus, scraping a real prometheus_client
exporter: the rule groups load and evaluate, a recording rule returns the value the
exporter's counters imply, and `PrometheusProvider` raises the documented errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from helpers import wait_for
from vidrec.config import AlertConfig, MonitoringConfig
from vidrec.errors import InvalidInput, NotReady
from vidrec.monitoring import rules
from vidrec.monitoring.prometheus import PrometheusProvider, Sample
from vidrec.monitoring.prometheus_server import PrometheusProcess
from vidrec.ports import free_port

pytestmark = pytest.mark.integration

CLICKS_PER_TICK, IMPRESSIONS_PER_TICK = 1, 5  # CTR 0.2


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    """A /metrics endpoint whose vidrec_* counters grow steadily; yields host:port."""
    registry = CollectorRegistry()
    requests = Counter("vidrec_requests", "", ["variant", "code"], registry=registry)
    latency = Histogram(
        "vidrec_request_duration_seconds",
        "",
        ["variant", "stage"],
        buckets=rules.LATENCY_BUCKETS,
        registry=registry,
    )
    impressions = Counter("vidrec_impressions", "", ["variant", "version"], registry=registry)
    clicks = Counter("vidrec_clicks", "", ["variant", "version"], registry=registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.02):
            requests.labels("champion", "200").inc()
            latency.labels("champion", "total").observe(0.004)
            impressions.labels("champion", "3").inc(IMPRESSIONS_PER_TICK)
            clicks.labels("champion", "3").inc(CLICKS_PER_TICK)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    stop.set()
    thread.join()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prometheus(exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cfg = MonitoringConfig(
        scrape_interval_s=1,
        serving_target=exporter,
        alerts=AlertConfig(rule_window_s=4, slo_long_window_s=10, ctr_baseline_window_s=10),
    )
    tmp = tmp_path_factory.mktemp("prometheus")
    files = rules.write_prometheus_files(
        cfg, tmp / "etc", monitor_target=f"127.0.0.1:{free_port()}"
    )
    with PrometheusProcess(files["prometheus.yml"], tmp / "data") as prom:
        yield prom.url


def test_both_rule_groups_load_and_evaluate(prometheus: str) -> None:
    def evaluated() -> dict[str, list[dict[str, Any]]] | None:
        body = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()
        groups = {g["name"]: g["rules"] for g in body["data"]["groups"]}
        done = all(r["health"] != "unknown" for rs in groups.values() for r in rs)
        return groups if done and groups else None

    groups = wait_for("both rule groups evaluated", evaluated, timeout_s=20, interval_s=0.25)
    assert set(groups) == {rules.RECORDING_GROUP, rules.ALERT_GROUP}
    bad = {r["name"]: r.get("lastError") for rs in groups.values() for r in rs}
    assert {n: e for n, e in bad.items() if e} == {}
    assert {r["health"] for rs in groups.values() for r in rs} == {"ok"}


def test_ctr_recording_rule_matches_the_exported_counters(prometheus: str) -> None:
    provider = PrometheusProvider(prometheus)
    assert provider.is_online()
    samples: list[Sample] = wait_for("the recorded CTR", lambda: provider.query(rules.CTR),
                                     timeout_s=20, interval_s=0.25)  # fmt: skip
    assert [s.labels for s in samples] == [{"__name__": rules.CTR, "variant": "champion"}]
    assert samples[0].value == pytest.approx(CLICKS_PER_TICK / IMPRESSIONS_PER_TICK, abs=0.02)


def test_a_bad_query_is_invalid_input_naming_it(prometheus: str) -> None:
    with pytest.raises(InvalidInput, match=r"sum by \(variant\) \(rate\(") as err:
        PrometheusProvider(prometheus).query("sum by (variant) (rate(vidrec_clicks_total))")
    assert prometheus in err.value.message


def test_an_unreachable_prometheus_is_not_ready() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    provider = PrometheusProvider(dead, timeout_s=2)
    with pytest.raises(NotReady, match="unreachable") as err:
        provider.query("vector(1)")
    assert dead in err.value.message and "vector(1)" in err.value.message
    assert not provider.is_online()
