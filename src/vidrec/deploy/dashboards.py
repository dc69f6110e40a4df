"""The Grafana dashboards, declared once: every panel is a title and its PromQL queries.

`vidrec chart generate` writes them as Grafana JSON to `dashboards/` and into the chart
(ConfigMaps for the kube-prometheus-stack sidecar); `vidrec dashboards render` plots the
same queries from a Prometheus into PNG previews; an integration test runs every query
against the real Prometheus of a local stack and fails on any that returns nothing.

Queries use the recorded series of `vidrec.monitoring.rules` where one exists, so the
dashboards and the alerts read the same numbers. `$__rate_interval` is Grafana's rate
window; `expr(q, window)` substitutes it for anything else that runs the queries.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from vidrec.monitoring import rules

RATE = "$__rate_interval"
Kind = Literal["timeseries", "stat", "bargauge"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Kind = "timeseries"
    threshold: float | None = None  # drawn as a red line (a limit the alerts use)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def expr(q: Query, window: str) -> str:
    """The query with Grafana's rate window replaced (e.g. by "1m")."""
    return q.expr.replace(RATE, window)


def _q(expr: str, legend: str) -> Query:
    return Query(" ".join(expr.split()), legend)


def _rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[{RATE}]))"


def _quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, {_rate(metric + '_bucket', 'le, ' + by, selector)})"


CTR = Panel(
    "Online CTR: champion vs challenger",
    "Clicks reported by feedback per video shown, by variant (recorded series)",
    (_q(rules.CTR, "{{variant}}"),),
    unit="percentunit",
)
WATCH = Panel(
    "Watch seconds per impression",
    "Watch time reported by feedback per video shown, by variant (recorded series)",
    (_q(rules.WATCH_PER_IMPRESSION, "{{variant}}"),),
    unit="s",
)

SERVING = Dashboard(
    "vidrec-serving",
    "vidrec / Serving",
    "The model server: load, latency by stage and variant, errors, graceful degradation",
    (
        Panel(
            "Requests per second",
            "Answered recommendation requests by variant and HTTP status",
            (_q(_rate("vidrec_requests_total", "variant, code"), "{{variant}} {{code}}"),),
            unit="reqps",
        ),
        Panel(
            "End-to-end latency p50 / p95 / p99",
            "Whole-request latency by variant, from the server's histogram",
            tuple(
                _q(
                    _quantile(q, "vidrec_request_duration_seconds", "variant", '{stage="total"}'),
                    f"p{round(q * 100)} {{{{variant}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ),
            unit="s",
            threshold=0.1,
        ),
        Panel(
            "p99 latency by stage",
            "Retrieval, online features and ranking, by variant",
            (
                _q(
                    _quantile(
                        0.99,
                        "vidrec_request_duration_seconds",
                        "stage, variant",
                        '{stage!="total"}',
                    ),
                    "{{stage}} {{variant}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Error ratio",
            "Share of answers that were server errors (5xx, alerted) and client errors "
            "(4xx: bad bodies, reused request ids); recorded, 0 when there are none",
            (_q(rules.ERROR_RATIO, "{{job}} 5xx"), _q(rules.CLIENT_ERROR_RATIO, "{{job}} 4xx")),
            unit="percentunit",
        ),
        Panel(
            "Errors by type",
            "Failed or rejected requests per second, by error type",
            (_q(_rate("vidrec_errors_total", "type"), "{{type}}"),),
            unit="reqps",
        ),
        Panel(
            "Degraded responses",
            "Responses served by the popularity fallback, by variant and reason",
            (
                _q(
                    _rate("vidrec_degraded_responses_total", "variant, reason"),
                    "{{variant}} {{reason}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Garbage collector pauses (p99)",
            "The serving process stops while Python's collector runs: a latency spike that "
            "lines up with a generation 2 pause is the collector's",
            (_q(_quantile(0.99, "vidrec_gc_pause_seconds", "generation"), "gen {{generation}}"),),
            unit="s",
        ),
        Panel(
            "Requests per model call (mean)",
            "Requests that waited while a version's app was busy leave together in one call: "
            "above 1 under load, where it saves the per-call cost",
            (
                _q(
                    f"{_rate('vidrec_model_call_requests_sum', 'version, call')} / "
                    f"{_rate('vidrec_model_call_requests_count', 'version, call')}",
                    "v{{version}} {{call}}",
                ),
            ),
        ),
        Panel(
            "Loaded model versions",
            "1 for each version a variant serves; apps running: those plus versions the route "
            "table stopped naming, until retired (serving.retire_after_s)",
            (
                _q("max by (variant, version) (vidrec_model_info)", "{{variant}} v{{version}}"),
                _q("max(vidrec_model_versions_loaded)", "apps running"),
            ),
        ),
        Panel(
            "Videos returned per response (median)",
            "Slate size after business rules, by variant",
            (_q(_quantile(0.5, "vidrec_items_returned", "variant"), "{{variant}}"),),
        ),
    ),
)

ROLLOUT = Dashboard(
    "vidrec-rollout",
    "vidrec / Rollout",
    "A release in progress: phase, weight, each analysis check against its threshold, and "
    "champion vs challenger",
    (
        Panel(
            "Phase",
            "The rollout's current phase (1 while in it)",
            (_q("max by (version, phase) (vidrec_rollout_phase) > 0", "v{{version}} {{phase}}"),),
        ),
        Panel(
            "Challenger weight",
            "Share of user cohorts routed to the challenger",
            (_q("max by (version) (vidrec_rollout_weight_percent)", "v{{version}}"),),
            unit="percent",
        ),
        Panel(
            "Analysis checks: value",
            "Each check's last measured value",
            (_q("max by (version, check) (vidrec_rollout_check_value)", "v{{version}} {{check}}"),),
        ),
        Panel(
            "Analysis checks: value / threshold",
            "Each check's value over the threshold it is held against (at 1 it sits on the "
            "limit; ceilings fail above it, floors below it)",
            (
                _q(
                    "max by (version, check) (vidrec_rollout_check_value) / (max by (version, "
                    "check) (vidrec_rollout_check_threshold) != 0)",
                    "v{{version}} {{check}}",
                ),
            ),
            threshold=1.0,
        ),
        Panel(
            "Check results",
            "How many checks last passed, failed, were inconclusive or pending",
            (_q("sum by (result) (vidrec_rollout_check_result)", "{{result}}"),),
        ),
        Panel(
            "Requests by variant",
            "Answered requests per second (recorded series)",
            (_q(rules.REQUESTS_RATE, "{{variant}}"),),
            unit="reqps",
        ),
        Panel(
            "p99 latency by variant",
            "End-to-end p99 (recorded series)",
            (_q(rules.LATENCY_P99, "{{variant}}"),),
            unit="s",
            threshold=0.1,
        ),
        CTR,
        WATCH,
        Panel(
            "Shadow calls by outcome",
            "Challenger calls made beside served requests (compared, degraded, dropped, failed)",
            (_q(_rate("vidrec_shadow_requests_total", "outcome"), "{{outcome}}"),),
            unit="reqps",
        ),
        Panel(
            "Shadow overlap@k",
            "Mean share of the served slate the challenger would also have shown",
            (_q(rules.SHADOW_OVERLAP_MEAN, "v{{version}}"),),
            unit="percentunit",
        ),
        Panel(
            "Controller actions",
            "Actions the rollout controller took (advance, hold, promote, rollback...)",
            (
                _q(
                    f"sum by (action) (increase(vidrec_rollout_actions_total[{RATE}]))",
                    "{{action}}",
                ),
            ),
        ),
    ),
)

QUALITY = Dashboard(
    "vidrec-quality",
    "vidrec / Model quality and drift",
    "Online engagement, the drift monitor's tests per feature, the score distribution and "
    "how old the serving model is",
    (
        CTR,
        WATCH,
        Panel(
            "Drift p-value per feature (champion)",
            "The monitor's last test per feature; below the line (monitoring.p_value before "
            "correction) counts towards drift",
            (_q('min by (feature) (vidrec_drift_p_value{variant="champion"})', "{{feature}}"),),
            threshold=0.01,
        ),
        Panel(
            "Drifting features",
            "Features whose last window drifted (after the multiple-testing correction)",
            (_q("sum by (variant) (vidrec_drift_detected)", "{{variant}}"),),
        ),
        Panel(
            "Score drift p-value",
            "The ranker's score distribution against its reference",
            (_q("min by (variant) (vidrec_prediction_drift_p_value)", "{{variant}}"),),
            threshold=0.01,
        ),
        Panel(
            "Score distribution p10 / p50 / p90",
            "Ranker scores returned, by variant",
            tuple(
                _q(_quantile(q, "vidrec_score", "variant"), f"p{round(q * 100)} {{{{variant}}}}")
                for q in (0.1, 0.5, 0.9)
            ),
        ),
        Panel(
            "Model staleness",
            "Seconds since the serving model was trained (recorded series)",
            (_q(rules.MODEL_AGE, "{{variant}}"),),
            unit="s",
        ),
        Panel(
            "Data quality: worst feature",
            "Largest share of missing and of out-of-training-range values in the window",
            (
                _q("max(vidrec_feature_missing_ratio)", "missing"),
                _q("max(vidrec_feature_out_of_range_ratio)", "out of range"),
            ),
            unit="percentunit",
        ),
        Panel(
            "Requests per monitor window",
            "Ranked requests the last window held (too few: insufficient data, not 'no drift')",
            (_q("max by (variant) (vidrec_drift_window_requests)", "{{variant}}"),),
        ),
        Panel(
            "Monitor runs",
            "Monitor runs by result",
            (_q(f"sum by (result) (increase(vidrec_monitor_runs_total[{RATE}]))", "{{result}}"),),
        ),
    ),
)

PIPELINE = Dashboard(
    "vidrec-pipeline",
    "vidrec / Pipeline",
    "The newest training run: when, how it ended, its steps, offline metrics and gates",
    (
        Panel(
            "Since the last run",
            "Seconds since the newest run last wrote its record",
            (
                _q(
                    "time() - max by (pipeline) (vidrec_pipeline_last_run_timestamp_seconds)",
                    "{{pipeline}}",
                ),
            ),
            unit="s",
            kind="stat",
        ),
        Panel(
            "Last run status",
            "How the newest run ended (running, ok, failed)",
            (
                _q(
                    "max by (pipeline, status) (vidrec_pipeline_last_run_status) > 0",
                    "{{pipeline}} {{status}}",
                ),
            ),
            kind="stat",
        ),
        Panel(
            "Registered version",
            "Registry version the newest run registered (none when a gate rejected it)",
            (_q("max by (pipeline) (vidrec_pipeline_registered_version)", "{{pipeline}}"),),
            kind="stat",
        ),
        Panel(
            "Step wall time",
            "Seconds per step of the newest run",
            (_q("max by (step) (vidrec_pipeline_step_duration_seconds)", "{{step}}"),),
            unit="s",
            kind="bargauge",
        ),
        Panel(
            "Debiased NDCG@10 by model (test window)",
            "Ranking quality on held-out days, clicks reweighted by examination propensity",
            (
                _q(
                    'max by (model) (vidrec_pipeline_offline_metric{table="slates", '
                    'metric="ndcg10_clicks_debiased"})',
                    "{{model}}",
                ),
            ),
            kind="bargauge",
        ),
        Panel(
            "IPS CTR@1 by model (test window)",
            "Off-policy estimate of the top slot's click rate",
            (
                _q(
                    'max by (model) (vidrec_pipeline_offline_metric{table="slates", '
                    'metric="ips_ctr_top1"})',
                    "{{model}}",
                ),
            ),
            unit="percentunit",
            kind="bargauge",
        ),
        Panel(
            "Retrieval recall@500",
            "Share of test clicks among the retrieved candidates",
            (
                _q(
                    'max by (model) (vidrec_pipeline_offline_metric{table="retrieval", '
                    'metric="recall500_clicks"})',
                    "{{model}}",
                ),
            ),
            unit="percentunit",
            kind="bargauge",
        ),
        Panel(
            "Gates passed",
            "1 if the gate passed in the newest run",
            (_q("max by (gate) (vidrec_pipeline_gate_passed)", "{{gate}}"),),
            kind="bargauge",
        ),
        Panel(
            "Gate value vs threshold",
            "What each numeric gate measured, and its threshold",
            (
                _q("max by (gate) (vidrec_pipeline_gate_value)", "{{gate}}"),
                _q("max by (gate) (vidrec_pipeline_gate_threshold)", "{{gate}} threshold"),
            ),
            kind="bargauge",
        ),
    ),
)

DASHBOARDS = (SERVING, ROLLOUT, QUALITY, PIPELINE)


# --- Grafana JSON ---------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH, HEIGHT = 12, 8  # two panels a row on Grafana's 24-column grid


def grafana(d: Dashboard) -> dict[str, Any]:
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["vidrec"],
        "timezone": "browser",
        "editable": True,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": [_panel(i, p) for i, p in enumerate(d.panels)],
    }


def _panel(i: int, p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.threshold is not None:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": p.threshold}],
        }
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "id": i + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (i % 2) * WIDTH, "y": (i // 2) * HEIGHT},
        "targets": [
            {
                "refId": chr(ord("A") + k),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
                "instant": p.kind != "timeseries",
                "range": p.kind == "timeseries",
            }
            for k, q in enumerate(p.queries)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }


@functools.cache  # chart generation asks once per file written
def files() -> dict[str, str]:
    """{file name: Grafana JSON} for every dashboard."""
    return {f"{d.uid}.json": json.dumps(grafana(d), indent=2) + "\n" for d in DASHBOARDS}
