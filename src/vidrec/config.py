"""One typed settings tree.

Every settings object rejects unknown keys (`extra="forbid"`) so a typo in a
config file is an error naming the key, not a silently ignored value.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidrec.errors import ConfigError, VidrecError

Scenario = Literal["none", "interest-shift", "new-market", "catalog-surge"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)

DAY = 86_400
COHORTS = 100  # user engagement cohorts (serving.routing): the canary's unit, 1 % each
REDIS_URLS = ("redis://", "rediss://", "unix://")  # what redis-py's from_url takes
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: simulated time starts here (epoch seconds)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Setting(Strict):
    """What people write (settings files, chart values, route tables): a number is finite.
    TOML's `inf` and JSON's `Infinity` passed every `gt=0` bound (an infinite TTL or
    window then failed far from the file that said it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Exact(Strict):
    """A request body: JSON's types as sent, never converted (`true` is no k of 1, `"3"`
    no user id 3; an integer may stand for a float), and finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SimConfig(Setting):
    """Size and behaviour of the simulated video platform."""

    users: int = Field(gt=0, description="users at the end of the simulation (existing + arriving)")
    videos: int = Field(gt=0, description="videos at the end (catalogue + uploads)")
    days: int = Field(gt=0, le=365, description="simulated days of traffic")
    creators_per_video: float = Field(0.05, gt=0, le=1, description="creators = videos * this")
    initial_user_share: float = Field(0.8, gt=0, le=1, description="users signed up before day 0")
    initial_video_share: float = Field(0.7, gt=0, le=1, description="videos uploaded before day 0")
    daily_active_rate: float = Field(gt=0, le=1, description="mean share of users active per day")
    sessions_per_active_user: float = Field(1.5, ge=1, description="mean sessions per active day")
    requests_per_session: float = Field(3.0, ge=1, description="mean slates requested per session")
    slate_size: int = Field(10, ge=2, le=50)
    topics: int = Field(16, ge=2, le=128, description="dimension of latent interest/topic vectors")
    exploration: float = Field(
        0.1, ge=0, le=1, description="logging policy: share of uniform draws"
    )
    fresh_days: float = Field(3.0, gt=0, description="videos younger than this are 'fresh'")
    examination_decay: float = Field(1.0, gt=0, description="P(examine k) = (1+k)^-decay, k from 0")
    label_delay_mean_s: float = Field(
        120.0, gt=0, description="mean ingestion delay of watch events"
    )
    scenario_day: int | None = Field(
        None, ge=1, description="onset day of the scenario (default 2/3)"
    )
    chunk_requests: int = Field(200_000, gt=0, description="requests simulated per streamed chunk")

    @model_validator(mode="after")
    def _onset_inside(self) -> SimConfig:
        if self.scenario_day is not None and self.scenario_day >= self.days:
            raise ValueError(f"scenario_day ({self.scenario_day}) must be < days ({self.days})")
        return self

    @property
    def onset_day(self) -> int:
        return self.scenario_day if self.scenario_day is not None else max(1, self.days * 2 // 3)


SCALES: dict[str, SimConfig] = {
    "small": SimConfig(
        users=2_000, videos=600, days=14, daily_active_rate=0.25, chunk_requests=20_000
    ),
    "demo": SimConfig(users=30_000, videos=5_000, days=28, daily_active_rate=0.12),
    # >= 1M users, >= 100k videos, >= 50M impressions, streamed in bounded memory
    "large": SimConfig(users=1_000_000, videos=100_000, days=28, daily_active_rate=0.05),
}


class FeatureConfig(Setting):
    """How features are computed and served."""

    refresh_seconds: int = Field(
        3600,
        ge=0,
        description="batch features are snapshots taken every refresh_seconds; a request at t "
        "sees the snapshot at floor(t); 0 means exactly at t (no freshness lag)",
    )
    last_n: int = Field(5, ge=1, le=100, description="length of the recent-watch history feature")
    online_store: str = Field(
        "sqlite:///",
        description="sqlite:///path.db or redis://host:port/db; the default, in memory, is for "
        "tests (serve and materialize refuse it). In the chart: the shared volume, or Redis "
        "when redis.enabled",
    )
    duckdb_memory_limit: str = Field("4GB", description="DuckDB spills to disk beyond this")
    duckdb_threads: int = Field(2, ge=1)
    label_horizon_s: int = Field(
        6 * 3600,
        gt=0,
        description="an impression without a watch after this long is a negative; newer "
        "impressions are held back as label-pending",
    )


M = TypeVar("M", bound=BaseModel)


def parse(
    model: type[M], data: dict[str, Any] | str, where: str, error: type[VidrecError] = ConfigError
) -> M:
    """Validate `data` (a dict, or JSON text) as `model`; the error (ConfigError unless
    told otherwise) names the offending key and where it came from."""
    try:
        if isinstance(data, str):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        key, msg = first_error(exc.errors())
        raise error(f"{where}: {key}: {msg}", key=key, source=where) from exc


def first_error(errors: Sequence[Any]) -> tuple[str, str]:
    """A pydantic validation's first error as (dotted key, message)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    return ".".join(str(p) for p in first["loc"]) or "(root)", str(first["msg"])


def load_settings(path: Path | None) -> Settings:
    """Settings from a TOML or JSON file; defaults when no file is given."""
    if path is None:
        return Settings()
    if not path.exists():
        raise ConfigError(f"settings file not found: {path}", file=str(path))
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON/TOML, nested too deep
        why = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise ConfigError(f"{path}: cannot parse: {why}", file=str(path)) from None
    return parse(Settings, data, str(path))


def sim_config(scale: str, overrides: dict[str, Any] | None = None) -> SimConfig:
    if scale not in SCALES:
        raise ConfigError(
            f"--scale: unknown scale {scale!r}; choose one of {sorted(SCALES)}", key="scale"
        )
    base = SCALES[scale].model_dump()
    return parse(SimConfig, {**base, **(overrides or {})}, f"scale {scale}")


class GateConfig(Setting):
    """Registration gates: what a candidate model must beat before it is registered."""

    metric: str = Field(
        "ips_ctr_top1",
        min_length=1,
        description="validation-window metric the gates compare; higher is better",
    )
    min_gain_over_baselines: float = Field(
        0.0, ge=0, description="absolute gain over every baseline the candidate must reach"
    )
    min_gain_over_champion: float = Field(
        0.0,
        description="absolute gain over the current champion; negative allows a tolerance "
        "(e.g. -0.002 accepts a candidate up to 0.002 worse)",
    )
    baselines: tuple[str, ...] = Field(
        ("popularity", "logistic"), description="baselines the candidate must beat, by name"
    )


class RegistryConfig(Setting):
    """Where model versions are registered (the MLflow Model Registry)."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking and registry URI; None means an embedded "
        "sqlite:///<root>/mlflow.db with artifacts under <root>/artifacts",
    )
    root: Path = Field(
        Path("out/registry"), description="home of the embedded database and artifacts"
    )
    model_name: str = Field("vidrec", min_length=1, description="registered model name")
    experiment: str = Field(
        "vidrec-training", min_length=1, description="MLflow experiment holding the runs"
    )


class TrainConfig(Setting):
    """The training pipeline: windows, models, evaluation, gates and registry."""

    validation_days: float = Field(3.0, gt=0, description="validation window (gates read it)")
    test_days: float = Field(3.0, gt=0, description="test window (the offline report)")
    gap_s: int = Field(6 * 3600, ge=0, description="gap between windows; >= label horizon")
    retrieval_epochs: int = Field(3, ge=1, description="passes over the training clicks")
    ranker_rounds: int = Field(200, ge=1, description="LightGBM boosting rounds")
    debias: Literal["ipw", "none"] = Field(
        "ipw", description="position-bias correction of the registered ranker"
    )
    candidates: int = Field(50, ge=20, description="retrieval candidates ranked per request")
    eval_requests: int = Field(1000, ge=10, description="test requests sampled for evaluation")
    reference_days: int = Field(
        3,
        ge=1,
        le=14,
        description="the drift reference is served as of every reference_block_s over "
        "the log's last this many days; the days' snapshots at one hour of day are one block",
    )
    reference_lookback_s: int = Field(
        4 * 3600,
        ge=600,
        description="each snapshot's users are those with a request in the this long "
        "before it, as a monitor window's users arrived within the window (match the "
        "window: vidrec bench drift's are 4 h)",
    )
    reference_requests: int = Field(
        1000,
        ge=10,
        description="requests replayed through the serving path per block of the "
        "drift monitor's reference, split evenly over its days "
        "(vidrec.training.serving_reference)",
    )
    reference_block_s: int = Field(
        4 * 3600,
        ge=3600,
        description="the reference is served as of the data's end and every this long "
        "before it (a whole number of hours dividing a day), each hour of day counted "
        "apart: features follow the time of day (vidrec.features.hours)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _blocks_tile_a_day(self) -> TrainConfig:
        if self.reference_block_s % 3600 or DAY % self.reference_block_s:
            raise ValueError(
                f"reference_block_s: {self.reference_block_s} is not a whole number of "
                "hours dividing a day (e.g. 3600, 14400, 21600)"
            )
        return self


RAY_CPUS = 2  # the Ray node `vidrec serve` starts (ray.init(num_cpus=...))
FUSED_REPLICAS = RAY_CPUS  # `ServingConfig.replicas` by default: one per CPU of that node


class ServingConfig(Setting):
    """Business rules applied after ranking, and the serving app's limits."""

    max_per_creator: int = Field(2, ge=1, description="at most this many videos per creator")
    explore_slots: int = Field(
        1, ge=0, description="slots per response given to a uniformly drawn fresh video"
    )
    fresh_days: float = Field(3.0, gt=0, description="videos younger than this may explore")
    candidates: int = Field(
        200, ge=20, le=2000, description="retrieval candidates ranked per request (>= 2k used)"
    )
    fresh_candidates: int = Field(
        20, ge=0, le=500, description="nearest fresh videos ranked beside them (exploration pool)"
    )
    deadline_s: float = Field(
        0.5, gt=0, le=30, description="model path (retrieval + ranking) budget before fallback"
    )
    shadow_queue: int = Field(
        64, ge=1, description="shadow calls in flight at most; more are dropped and counted"
    )
    replica_queue: int = Field(
        5,
        ge=1,
        description="calls a version's replica holds at once (Ray Serve's "
        "max_ongoing_requests); when full, the server's router backs off for up to 0.5 s",
    )
    max_batch: int = Field(
        16,
        ge=1,
        le=64,
        description="requests sent to a version's app in one call at most; a call carries "
        "more than one only while calls_in_flight are outstanding (1: one request per call)",
    )
    calls_in_flight: int = Field(
        1,
        ge=1,
        description="calls outstanding at once per replica of a version's app (a replica runs "
        "one at a time); requests that arrive meanwhile wait in the server and leave together "
        "in the next call (no timer: alone at low load)",
    )
    replicas_per_version: int | None = Field(
        None,
        ge=1,
        le=8,
        description="replicas of each version's model path (fused: the version's app; split: "
        "Retrieval and Ranking each), a fifth of a CPU each, all in one 2-CPU Ray node; "
        "unset: one per CPU in the fused topology (2), 1 in the split",
    )
    retire_after_s: float = Field(
        300.0,
        ge=0,
        description="a loaded version the route table no longer names (a former champion, a "
        "rolled-back challenger) is unloaded after this long, freeing its replicas' CPU and "
        "memory; sooner when a version the table names needs its room",
    )
    shadow_linger_s: float = Field(
        0.1,
        ge=0,
        description="a shadow call waits up to this for others to share its model call (a "
        "handle call costs CPU whatever it carries); at most half of deadline_s is used",
    )
    shadow_idle: bool = Field(
        True,
        description="a replica runs batches of shadow calls alone on a thread under Linux's "
        "SCHED_IDLE policy, which gets a CPU only when served work leaves one idle (false: "
        "same priority): on a shared machine, a challenger shadowing every request must not "
        "take the champion's CPU",
    )
    topology: Literal["fused", "split"] = Field(
        "fused",
        description="fused: retrieval and ranking in one replica per version (one hop); "
        "split: separate Retrieval and Ranking deployments, scaled apart (two more hops)",
    )
    request_logs: bool = Field(
        False,
        description="log each request (uvicorn's access line and KServe's two timing lines); "
        "off, requests are counted and timed on /metrics only",
    )
    remember_requests: int = Field(
        100_000, ge=1, description="served requests kept for joining feedback (oldest forgotten)"
    )
    served_store: str = Field(
        "",
        description="where served requests wait for their feedback: empty, this process (the "
        "last remember_requests); redis://host:port/db, shared by every model-server pod "
        "(feedback reaches any pod; in the chart, set when redis.enabled)",
    )
    served_ttl_s: float = Field(
        86_400.0, gt=0, description="a redis served_store keeps each served request this long"
    )

    @field_validator("served_store")
    @classmethod
    def _a_redis_url(cls, url: str) -> str:
        if url and not url.startswith(REDIS_URLS):
            raise ValueError(f"{url!r} is not a redis:// URL (empty: this process)")
        return url

    log_flush_rows: int = Field(
        5_000, ge=1, description="impression log rows buffered before a parquet part is written"
    )
    log_flush_s: float = Field(
        10.0, gt=0, description="buffered log rows are written at least this often"
    )
    log_retention_days: float = Field(
        7.0,
        gt=0,
        description="the server deletes log parts older than this (hourly): ingest must copy "
        "them into the training data before (the chart's materialize CronJob, every 30 min)",
    )

    @property
    def log_retention_s(self) -> float:
        return self.log_retention_days * DAY

    @property
    def replicas(self) -> int:
        """`replicas_per_version`, or its default: on two cores a second replica ranks beside
        the first (100 req/s: p50 and p99 about halved in `vidrec bench serve`), while the
        split topology's three deployments per version would not fit twice."""
        if self.replicas_per_version is not None:
            return self.replicas_per_version
        return FUSED_REPLICAS if self.topology == "fused" else 1


class AlertConfig(Setting):
    """Thresholds of the Prometheus recording and alerting rules (`vidrec monitor rules`)."""

    rule_window_s: int = Field(300, ge=1, description="rate() window of the recording rules")
    alert_for_s: int = Field(120, ge=0, description="how long a condition holds before it fires")
    latency_slo_s: float = Field(
        0.1, gt=0, description="a request slower than this spends SLO budget (a histogram edge)"
    )
    latency_objective: float = Field(
        0.99, gt=0, lt=1, description="share of requests that must meet latency_slo_s"
    )
    burn_rate: float = Field(
        14.4, gt=0, description="budget burn rate that pages (on both the short and long window)"
    )
    slo_long_window_s: int = Field(3600, ge=1, description="long window of the SLO burn alert")
    error_ratio_max: float = Field(
        0.01, gt=0, lt=1, description="server error (5xx) share that alerts"
    )
    ctr_drop: float = Field(
        0.1, gt=0, lt=1, description="relative drop of online CTR vs its trailing baseline"
    )
    ctr_z: float = Field(
        3.0,
        gt=0,
        description="and the drop must be this many standard errors (two-proportion z-test): "
        "a quiet hour's noise does not alert",
    )
    ctr_window_s: int = Field(
        8 * 3600,
        ge=1,
        description="window whose CTR is tested: long enough to hold the impressions that "
        "show a drop of ctr_drop",
    )
    ctr_baseline_window_s: int = Field(
        24 * 3600,
        ge=1,
        description="the baseline: this long a window, ending where ctr_window_s starts "
        "(a whole day weighs every hour of the day alike)",
    )
    ctr_min_impressions_per_s: float = Field(
        0.5, ge=0, description="below this impression rate the CTR alert stays silent (no data)"
    )
    max_model_age_s: int = Field(7 * 86_400, ge=1, description="older serving models alert")


class MonitoringConfig(Setting):
    """Prometheus, the drift monitor and what it does on sustained drift."""

    prometheus_url: str = Field("http://127.0.0.1:9090", description="the Prometheus queried")
    scrape_interval_s: int = Field(15, ge=1, description="scrape and rule evaluation interval")
    serving_target: str = Field("127.0.0.1:8080", description="host:port of the model server")
    monitor_port: int = Field(9201, ge=1, le=65535, description="the monitor's /metrics port")
    rollout_target: str = Field(
        "127.0.0.1:9202", description="host:port of the rollout controller's /metrics"
    )
    interval_s: float = Field(60.0, gt=0, description="the monitor runs its detectors this often")
    window_s: int = Field(
        300, ge=1, description="serving window each run compares with the reference"
    )
    min_requests: int = Field(
        200, ge=1, description="fewer requests in the window: insufficient data, not 'no drift'"
    )
    mode: Literal["binned", "samples"] = Field(
        "binned",
        description="binned: every feature from the Prometheus histograms; samples: "
        "sample_features from serving's logged request features, by a two-sample KS test "
        "plus an online CVM detector, the rest still binned",
    )
    request_log: Path | None = Field(
        None, description="serving's log directory (its requests/ table): samples mode reads it"
    )
    sample_features: tuple[str, ...] = Field(
        ("user_watches_1d", "user_watches_7d", "user_watches_28d", "user_watch_seconds_7d",
         "user_watch_seconds_28d", "user_ctr_7d", "user_tenure_days"),
        min_length=1,
        description="samples mode: continuous, non-negative request inputs tested on logged "
        "values (KS) and streamed to the online detector (CVMDriftOnline); missing is -1",
    )  # fmt: skip
    online_ert: int = Field(
        500, ge=10, description="online detector: expected requests between false alarms"
    )
    online_window_sizes: tuple[int, ...] = Field(
        (25, 100), min_length=1, description="online detector: sliding test windows (requests)"
    )
    online_bootstraps: int = Field(
        5_000, ge=1000, description="simulated streams that calibrate the online thresholds"
    )
    min_expected_count: float = Field(
        5.0,
        gt=0,
        description="bins pooled with their neighbours until each expects this many samples "
        "under no drift (below it the chi-square test's p-values are far too small)",
    )
    max_samples: int = Field(
        2_000,
        ge=10,
        description="effective sample size of a window's test (requests, not candidates: the "
        "candidates of one request share its user, so counting them would overstate evidence)",
    )
    p_value: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="family-wise significance level per window (features and predictions "
        "together): the share of drift-free windows that flag. The monitor looks every "
        "interval_s, so 0.01 would flag a quiet service every ~100 looks",
    )
    correction: Literal["bonferroni", "fdr"] = Field(
        "bonferroni", description="multiple-testing correction across features"
    )
    exclude_features: tuple[str, ...] = Field(
        ("hour_of_day",),
        description="features not tested: a window of minutes sees a few hours of the day, "
        "never the reference's whole day",
    )
    sustained_windows: int = Field(
        3, ge=1, description="consecutive drifting windows before alerting and retraining"
    )
    retrain: bool = Field(True, description="run the training pipeline on sustained drift")
    retrain_data: Path = Field(
        Path("out/demo/sim"), description="log directory the retraining trains on"
    )
    retrain_cooldown_s: float = Field(
        3600.0, ge=0, description="at most one retraining per cooldown"
    )
    pipeline_runs: tuple[Path, ...] = Field(
        (Path("out/runs"),),
        description="directories whose pipeline run records (run.json, up to two levels down) "
        "the monitor exports as vidrec_pipeline_* metrics, newest per pipeline; its own "
        "retraining runs are always included",
    )
    alerts: AlertConfig = AlertConfig()

    @model_validator(mode="after")
    def _samples_need_the_log(self) -> MonitoringConfig:
        if self.mode == "samples" and self.request_log is None:
            raise ValueError("request_log: samples mode reads serving's logged request features")
        return self


class ShadowPolicy(Setting):
    """The shadow phase: the challenger ranks a share of requests unseen before any user sees it."""

    duration_s: float = Field(
        60.0, ge=0, description="held at least this long (0: no shadow phase, canary at once)"
    )
    fraction: float = Field(1.0, gt=0, le=1, description="share of requests shadowed")
    min_requests: int = Field(100, ge=1, description="fewer shadow calls: inconclusive")
    min_overlap: float = Field(
        0.05, ge=0, le=1, description="mean overlap@k with the served slate must reach this"
    )
    max_overlap: float = Field(
        1.0, ge=0, le=1, description="and stay under this (1.0: an identical ranker passes)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> ShadowPolicy:
        if self.min_overlap > self.max_overlap:
            raise ValueError("min_overlap must be <= max_overlap")
        return self


class AnalysisPolicy(Setting):
    """What every analysis checks, and how much data it needs to say anything."""

    window_s: float = Field(
        30.0, gt=0, description="rate window of the latency and error queries (seconds)"
    )
    latency_slo_s: float = Field(
        0.1,
        gt=0,
        description="the challenger's p99 must stay under this (when the champion's is over it "
        "too, the challenger must not be slower than the champion)",
    )
    latency_max_regression: float = Field(
        0.5,
        ge=0,
        description="and be at most this much (relative) above the champion's p99 (the "
        "latency histogram's buckets are about 1.5x apart: tighter only flags noise)",
    )
    error_ratio_max: float = Field(
        0.01, ge=0, lt=1, description="share of failed or degraded (fallback) responses allowed"
    )
    min_requests: int = Field(
        100, ge=1, description="per variant and window: fewer makes latency/error inconclusive"
    )
    min_impressions: int = Field(
        2_000,
        ge=1,
        description="per variant since the canary began: fewer makes engagement inconclusive",
    )
    min_cohorts: int = Field(
        5,
        ge=2,
        le=COHORTS,
        description="user cohorts (1 % of users each) with impressions, per variant, the "
        "engagement tests need (their variance comes from how cohorts differ)",
    )
    baseline_s: float = Field(
        3600.0,
        ge=0,
        description="each cohort's engagement over this long before the canary began (any "
        "version) adjusts its engagement since (CUPED); 0: no adjustment",
    )
    alpha: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="one-sided level of the 'challenger is worse' tests; engagement is tested "
        "once per canary step, at alpha / (number of steps)",
    )
    engagement_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="relative engagement loss tolerated: the tests ask whether the challenger "
        "is worse than champion * (1 - margin)",
    )


class RolloutPolicy(Setting):
    """How a challenger is released: shadow, canary steps, analysis, limits. The same in local
    mode (`[rollout.policy]`) and in the chart's ModelRollout."""

    interval_s: float = Field(30.0, gt=0, description="analysis runs this often")
    shadow: ShadowPolicy = ShadowPolicy()
    steps: tuple[float, ...] = Field(
        (5.0, 25.0, 50.0),
        min_length=1,
        max_length=20,
        description="canary weights (% of users, sticky buckets), rising; promotion follows "
        "the last",
    )
    step_s: float = Field(60.0, gt=0, description="each canary weight is held at least this long")
    failure_limit: int = Field(
        2, ge=1, description="consecutive failed analyses that roll back automatically"
    )
    inconclusive_limit: int = Field(
        10, ge=1, description="consecutive inconclusive analyses that pause for a human"
    )
    analysis: AnalysisPolicy = AnalysisPolicy()

    @model_validator(mode="after")
    def _steps_rise(self) -> RolloutPolicy:
        for i, w in enumerate(self.steps):
            if not 0 < w < 100:
                raise ValueError(
                    f"steps[{i}]: weight {w} must be > 0 and < 100 (at 100 no champion traffic "
                    "is left to compare with; promotion moves the rest)"
                )
            if i and w <= self.steps[i - 1]:
                raise ValueError(f"steps[{i}]: weight {w} must be above the previous step")
        if self.steps[0] * COHORTS / 100 < self.analysis.min_cohorts:
            raise ValueError(
                f"steps[0]: a {self.steps[0]} % canary holds {self.steps[0] * COHORTS / 100:g} "
                f"user cohorts, fewer than analysis.min_cohorts ({self.analysis.min_cohorts})"
            )
        if self.step_s < self.interval_s:
            raise ValueError("step_s must be >= interval_s (a step needs an analysis)")
        return self


class RolloutConfig(Setting):
    """Where the local rollout controller keeps its state and what it drives."""

    policy: RolloutPolicy = RolloutPolicy()
    state: Path = Field(Path("out/rollout/rollout.json"), description="rollout object (JSON)")
    routes: Path = Field(Path("out/serve/routes.json"), description="serving's live route table")
    metrics_port: int = Field(9202, ge=1, le=65535, description="the controller's /metrics port")


class Settings(Setting):
    """The whole settings tree (`--config FILE`, TOML or JSON): one section per stage."""

    features: FeatureConfig = FeatureConfig()
    train: TrainConfig = TrainConfig()
    gates: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    rollout: RolloutConfig = RolloutConfig()
