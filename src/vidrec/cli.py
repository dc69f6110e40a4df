"""The `vidrec` command: one verb per stage, each with `--json` for one machine-readable line.

Arguments are parsed in `main()`, never at import. Errors that vidrec raises
on purpose (`VidrecError`) become a clear message and exit code 2; with
`--json` the error itself is the one JSON line.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import orjson
import typer

from vidrec.config import (
    SCALES,
    SCENARIOS,
    FeatureConfig,
    ServingConfig,
    Settings,
    load_settings,
    parse,
    sim_config,
)
from vidrec.errors import ConfigError, InvalidInput, VidrecError
from vidrec.ports import ensure_free

if TYPE_CHECKING:  # the CLI imports what a verb needs when it runs
    from vidrec.monitoring.retrain import Retrainer
    from vidrec.rollout.k8s_store import ModelRolloutStore
    from vidrec.rollout.store import RolloutStore

N = TypeVar("N", int, float)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="vidrec: video recommendations, from simulated logs to safe rollouts.",
)
features_app = typer.Typer(no_args_is_help=True, help="Feature pipeline: build, serve, check.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON reports, PNG plots).")
app.add_typer(features_app, name="features")
pipeline_app = typer.Typer(no_args_is_help=True, help="Pipelines defined in pipelines/*.yaml.")
registry_app = typer.Typer(no_args_is_help=True, help="Model registry (MLflow): versions, aliases.")
app.add_typer(bench_app, name="bench")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
monitor_app = typer.Typer(no_args_is_help=True, help="Drift monitor and Prometheus rules.")
app.add_typer(monitor_app, name="monitor")
rollout_app = typer.Typer(no_args_is_help=True, help="Safe rollout: shadow, canary, promote.")
app.add_typer(rollout_app, name="rollout")
chart_app = typer.Typer(no_args_is_help=True, help="The Helm chart's generated files.")
app.add_typer(chart_app, name="chart")
dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards: PNG previews.")
app.add_typer(dashboards_app, name="dashboards")


def _http_url(value: str) -> str:
    """An option that must be an http(s) URL: refused before any request is sent."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port outside 0-65535 or not a number
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise typer.BadParameter(f"{value!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL with a host")
    return value


def _writable_dir(path: Path, option: str) -> Path:
    """A directory the command will write into, checked before anything starts (a server
    given one it could not write answered, and logged nothing). Tried for real (root passes
    every permission check, not a read-only file system), and left as it was found."""
    import tempfile

    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for d in reversed(missing):
            d.mkdir()
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot write into {path}: {exc.strerror or exc}", key=option
        ) from exc
    finally:
        for d in missing:  # deepest first; the server makes them when it writes
            with contextlib.suppress(OSError):
                d.rmdir()
    return path


def _duration(value: str) -> str:
    """A Prometheus duration (1m, 90s, 1h30m): refused before any query, not by each one."""
    import re

    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", value) or not re.search(r"[1-9]", value):
        raise typer.BadParameter(f"{value!r} is not a Prometheus duration above 0 (e.g. 1m, 90s)")
    return value


def _finite(value: float | None) -> float | None:
    """A number option: inf passes click's ranges (inf >= 0.1) and ended in a traceback."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    return value


JSON = typer.Option(False, "--json", help="Print one JSON summary line instead of text.")
CONFIG = typer.Option(None, "--config", help="Settings file (TOML or JSON); unknown keys fail.")
LOG = typer.Option(
    None, help="first append this serving log to DATA (`vidrec ingest`; not there yet: none)"
)


def emit(
    summary: dict[str, Any], as_json: bool, title: str, lines: list[str] | None = None
) -> None:
    """`--json`: the summary on one line; else `lines` if given, or the summary pretty-printed."""
    if as_json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
        return
    from rich.console import Console
    from rich.pretty import Pretty
    from rich.text import Text

    if lines is None:
        Console().print(f"[bold]{title}[/bold]", Pretty(summary, expand_all=False))
        return
    console = Console(soft_wrap=True)  # a line per step, wrapped by the terminal, not cut
    console.print(f"[bold]{title}[/bold]")
    for line in lines:
        console.print(Text(line))


@contextlib.contextmanager
def progress(total: int | None, what: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; silent otherwise (CI, pipes, --json)."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def step_status(quiet: bool) -> Iterator[Callable[[str], None]]:
    """The running step's name on a terminal (rich status); silent otherwise."""
    if quiet or not sys.stderr.isatty():
        yield lambda _s: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda step: status.update(f"step: {step}")


def _features_cfg(config: Path | None, **flags: Any) -> FeatureConfig:
    """Settings file (or defaults), then command-line flags on top, validated together."""
    base = load_settings(config).features.model_dump()
    given = {k: v for k, v in flags.items() if v is not None}
    return parse(FeatureConfig, {**base, **given}, "command-line flags")


@app.command()
def simulate(
    scale: str = typer.Option("small", help="small | demo | large"),
    seed: int = typer.Option(0, min=0, help="same seed, same bytes"),
    scenario: str = typer.Option("none", help="none | interest-shift | new-market | catalog-surge"),
    days: int = typer.Option(None, help="override the scale's number of days"),
    onset_day: int = typer.Option(None, help="day the scenario starts"),
    out: Path = typer.Option(Path("out/sim"), help="output directory"),
    json_out: bool = JSON,
) -> None:
    """Simulate a video platform's logs (Parquet) with a ground-truth oracle beside them."""
    from vidrec.data.simulate import simulate as run

    if scenario not in SCENARIOS:
        raise ConfigError(f"--scenario: unknown scenario {scenario!r}", key="scenario")
    cfg = sim_config(
        scale, {k: v for k, v in {"days": days, "scenario_day": onset_day}.items() if v is not None}
    )
    with progress(cfg.days, f"simulating {cfg.days} days") as step:
        summary = run(cfg, scenario, seed, out, step)  # type: ignore[arg-type]
    emit(summary, json_out, "simulated")


@app.command()
def ingest(
    log: Path = typer.Option(..., help="the serving log (`vidrec serve --log-dir`)"),
    data: Path = typer.Option(..., help="the training data it joins (as `train --data`)"),
    json_out: bool = JSON,
) -> None:
    """Append the serving log's new impressions and watches to the training data (the
    feedback loop); a part whose schema is wrong is named and left out (exit 1)."""
    from vidrec.data.ingest import ingest as run

    with progress(_log_parts(log), "ingesting log parts") as step:
        summary = run(log, data, step=step)
    emit(summary, json_out, f"ingested into {data}", _ingest_lines(summary))
    if summary["refused"]:
        raise typer.Exit(1)


def _ingest_first(log: Path | None, data: Path) -> dict[str, Any] | None:
    """`--log` of train and materialize: ingest it (not there yet: nothing served yet);
    refused parts are said on stderr, and are in the summary returned."""
    if log is None:
        return None
    from vidrec.data.ingest import ingest as run

    with progress(_log_parts(log), "ingesting log parts") as step:
        summary = run(log, data, absent_ok=True, step=step)
    for line in _ingest_lines(summary)[1:]:
        sys.stderr.write(f"vidrec: {line}\n")
    return summary


def _log_parts(log: Path) -> int:
    """How many parts ingest will look at (a progress bar's total)."""
    from vidrec.data.ingest import LOGGED

    return sum(len(list((log / t).glob("*.parquet"))) for t in LOGGED)


def _ingest_lines(summary: dict[str, Any]) -> list[str]:
    """What was appended (one line), then each refused part and why."""
    if summary.get("absent"):
        return [f"ingest: {summary['log']} is not there yet: nothing logged to append"]
    done = "; ".join(
        f"{t}: {r['parts']} new parts ({r['rows']} rows; {r['future_rows']} from the future "
        f"left out), {r['already']} already in, {len(r['refused'])} refused"
        + _merged_line(r["compacted"])
        for t, r in summary["tables"].items()
    )
    refused = [x for r in summary["tables"].values() for x in r["refused"]]
    return [f"ingest: {done}", *(f"refused {x['file']}: {x['error']}" for x in refused)]


def _merged_line(c: dict[str, Any]) -> str:
    merged = f", {c['merged']} small parts merged into {c['into']}" if c["merged"] else ""
    return merged + (
        f", {c['deleted']} parts merged over an hour ago deleted" if c["deleted"] else ""
    )


@features_app.command("build")
def features_build(
    data: Path = typer.Option(Path("out/sim"), help="dataset directory"),
    out: Path = typer.Option(Path("out/features/training.parquet")),
    build_ts: int = typer.Option(
        None, min=0, help="pretend 'now' (epoch s); default: the newest fact"
    ),
    refresh_seconds: int = typer.Option(None, help="batch feature snapshot period"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Build the point-in-time-correct training set (fails on a leaky feature)."""
    from vidrec.features.training_set import build_training_set

    cfg = _features_cfg(config, refresh_seconds=refresh_seconds)
    with progress(None, "building training set") as step:
        summary = build_training_set(data, out, cfg, build_ts=build_ts, progress=step)
    emit(summary, json_out, "training set")


@features_app.command("materialize")
def features_materialize(
    data: Path = typer.Option(Path("out/sim")),
    as_of: int = typer.Option(
        None, min=0, help="snapshot time (epoch s); default: the newest fact's snapshot"
    ),
    store: str = typer.Option(
        None,
        envvar="VIDREC_ONLINE_STORE",
        help="sqlite:///path.db or redis://host:port/db (default: features.online_store)",
    ),
    log: Path = LOG,
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Write the batch-feature snapshot and the watch history into the online store."""
    import time

    from vidrec.data.validate import open_dataset
    from vidrec.features.definitions import FEATURES
    from vidrec.features.materialize import load_history, materialize
    from vidrec.features.pit import PointInTime, as_of_value
    from vidrec.features.store import in_memory, open_store
    from vidrec.features.training_set import default_build_ts

    t0 = time.perf_counter()
    cfg = _features_cfg(config, online_store=store)
    if in_memory(cfg.online_store):  # it would be gone when this command exits
        raise ConfigError(
            f"--store: {cfg.online_store!r} is in memory; name sqlite:///path.db or "
            "redis://host:port/db (or features.online_store in --config)",
            key="store",
        )
    ingested = _ingest_first(log, data)
    ds = open_dataset(data, cfg)
    snap = as_of if as_of is not None else as_of_value(cfg.refresh_seconds, default_build_ts(ds))
    pit = PointInTime(ds.con, FEATURES, cfg.last_n)
    st = open_store(cfg.online_store)
    try:
        written = materialize(pit, st, snap)
        events = load_history(ds.con, st, pit, snap)
    finally:
        st.close()
    emit(
        {
            "as_of": snap,
            "rows": written,
            "history_events": events,
            "store": cfg.online_store,
            "rejected": ds.rejected,
            **({"ingested": ingested} if ingested is not None else {}),
            "seconds": round(time.perf_counter() - t0, 3),
        },
        json_out,
        "materialized",
    )


@features_app.command("check-skew")
def features_check_skew(
    data: Path = typer.Option(Path("out/sim")),
    sample: int = typer.Option(2000, min=1, help="impressions to compare"),
    snapshots: int = typer.Option(3, min=1, help="snapshot windows to sample"),
    seed: int = typer.Option(0, min=0),
    store: str = typer.Option(None, help="online store URL"),
    store_lag_seconds: int = typer.Option(
        0, min=0, help="materialise this much too early (shows what staleness does)"
    ),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Compare online and offline vectors for logged requests; exit 1 on any difference."""
    from vidrec.features.skew import check_skew

    cfg = _features_cfg(config, online_store=store)
    summary = check_skew(
        data, cfg, sample=sample, snapshots=snapshots, seed=seed, store_lag_s=store_lag_seconds
    )
    emit(summary, json_out, "skew check")
    if not summary["passed"]:
        raise typer.Exit(1)


@features_app.command("list")
def features_list(json_out: bool = JSON) -> None:
    """The declared features: name, entity, source, aggregation, window, dtype, kind."""
    from vidrec.features.definitions import FEATURES

    rows: list[dict[str, Any]] = [
        {
            "name": f.name,
            "entity": f.entity.name,
            "source": f.source.name,
            "agg": f.agg,
            "window_s": f.window_s,
            "dtype": f.dtype,
            "kind": f"batch/{f.freshness}",
            "time": f.join_time,
        }
        for f in FEATURES.batch
    ]
    rows += [
        {"name": t.name, "inputs": list(t.inputs), "dtype": t.dtype, "kind": t.kind}
        for t in FEATURES.transforms
    ]
    emit(
        {
            "feature_set": FEATURES.name,
            "schema_hash": FEATURES.schema_hash(),
            "model_inputs": list(FEATURES.model_inputs),
            "features": rows,
        },
        json_out,
        "features",
    )


@bench_app.command("features")
def bench_features(
    scales: str = typer.Option("demo,large", help="comma-separated scales"),
    naive_rows: int = typer.Option(20_000, min=1, help="rows for the pandas baseline"),
    out: Path = typer.Option(Path("out/bench"), help="report directory"),
    json_out: bool = JSON,
) -> None:
    """PIT join rows/s, peak RSS, and the naive pandas join's speed in the same run."""
    from vidrec.bench.features import run
    from vidrec.bench.features_table import lines

    names = [s.strip() for s in scales.split(",") if s.strip()]
    if unknown := [s for s in names if s not in SCALES]:
        raise ConfigError(
            f"--scales: unknown scale {unknown[0]!r}; choose from {sorted(SCALES)}", key="scales"
        )
    report = run(names, naive_rows, out)
    emit(report, json_out, "feature benchmark", lines(report))


@bench_app.command("train")
def bench_train(
    scale: str = typer.Option("demo", help="simulation scale for the pipeline step times"),
    sizes: str = typer.Option("100000,1000000", help="catalogue sizes for the ANN benchmark"),
    pipeline: bool = typer.Option(True, help="also time the training pipeline's steps"),
    out: Path = typer.Option(Path("out/bench"), help="report directory"),
    json_out: bool = JSON,
) -> None:
    """Pipeline step times, ANN latency/recall vs exact search, ranker scoring latency."""
    from vidrec.bench.train import run
    from vidrec.bench.train_table import lines

    report = run(scale, _positive(sizes, "--sizes", int), out, pipeline)
    emit(report, json_out, "training benchmark", lines(report))


def _positive(text: str, option: str, kind: type[N]) -> list[N]:
    """A comma-separated list of numbers above zero, or a usage error naming the option."""
    values = []
    for x in (x.strip() for x in text.split(",")):
        try:
            value = kind(x)
        except ValueError:
            what = "whole number" if kind is int else "number"
            raise ConfigError(f"{option}: {x!r} is not a {what}", key=option) from None
        if not value > 0:  # NaN too
            raise ConfigError(f"{option}: {x} is not above 0", key=option)
        if value == float("inf"):
            raise ConfigError(f"{option}: {x} is not a finite number", key=option)
        values.append(value)
    return values


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _train_cmd(
    data: Path,
    log: Path | None,
    oracle: Path | None,
    run_dir: Path | None,
    config: Path | None,
    until: str | None,
    json_out: bool,
    title: str,
) -> None:
    from vidrec.training.run import run_training
    from vidrec.training.summary_lines import render

    settings = _settings(config)  # its errors before anything is copied
    ingested = _ingest_first(log, data)
    with step_status(json_out) as on_step:
        summary = run_training(settings, data, oracle, run_dir, until=until, on_step=on_step)
    lines = render(summary)
    if ingested is not None:
        summary["ingested"] = ingested
        lines = [_ingest_lines(ingested)[0], *lines]
    emit(summary, json_out, title, lines)
    if summary.get("registered") is False:
        sys.stderr.write("vidrec: a registration gate failed; nothing was registered\n")
        raise typer.Exit(3)


DATA = typer.Option(Path("out/demo/sim"), help="log directory in the documented schema")
ORACLE = typer.Option(None, help="simulator oracle (default: DATA/oracle when present)")
RUN_DIR = typer.Option(None, help="run directory (default: out/runs/<time>)")


@app.command()
def train(
    data: Path = DATA,
    log: Path = LOG,
    oracle: Path = ORACLE,
    run_dir: Path = RUN_DIR,
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Train, evaluate, gate and register a model (the training pipeline).

    Exit 0: registered (champion if none yet, else challenger); 3: a gate failed.
    """
    _train_cmd(data, log, oracle, run_dir, config, None, json_out, "training run")


@pipeline_app.command("run")
def pipeline_run(
    name: str = typer.Argument("training", help="pipelines/NAME.yaml: training, the one defined"),
    data: Path = DATA,
    log: Path = LOG,
    oracle: Path = ORACLE,
    run_dir: Path = RUN_DIR,
    until: str = typer.Option(None, help="stop after this step"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Run a pipeline definition; steps run as Ray tasks when RAY_ADDRESS is set."""
    if name != "training":
        raise InvalidInput(f"pipeline {name!r}: only 'training' is defined", key="name")
    _train_cmd(data, log, oracle, run_dir, config, until, json_out, f"pipeline {name}")


@app.command()
def evaluate(
    data: Path = DATA,
    oracle: Path = ORACLE,
    run_dir: Path = RUN_DIR,
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Train every model on the train window and report on validation and test (no registry)."""
    _train_cmd(data, None, oracle, run_dir, config, "evaluate", json_out, "evaluation")


@app.command()
def serve(
    port: int = typer.Option(8080, min=1, max=65535, help="HTTP port"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 in a pod)"),
    store: str = typer.Option(
        None, envvar="VIDREC_ONLINE_STORE", help="online store URL (see `features materialize`)"
    ),
    served_store: str = typer.Option(
        None,
        envvar="VIDREC_SERVED_STORE",
        help="redis URL where served requests wait for feedback, shared by the pods (default: "
        "[serving] served_store; empty: this process)",
    ),
    routes: Path = typer.Option(
        None, help="live route table file (default: [rollout] routes, which the controller drives)"
    ),
    log_dir: Path = typer.Option(None, help="impression/shadow log (default: beside routes)"),
    faults: Path = typer.Option(None, help="fault-injection file (delays, crashes) to watch"),
    model_version: str = typer.Option(
        None,
        envvar="VIDREC_MODEL_VERSION",
        help="serve only this registry version, whatever the aliases say (KServe Knative "
        "mode: each revision serves one version and KServe splits the traffic)",
    ),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Serve the champion (and challenger) from the registry: Ray Serve behind KServe."""
    ensure_free(host, port, "--port")
    from vidrec.serving.server import prepare_ray_env

    prepare_ray_env()
    from vidrec.features.store import in_memory, sqlite_file
    from vidrec.serving.deployments import check_fits, room, stop_app
    from vidrec.serving.server import Deployment, VersionApps, serve_forever

    settings = _settings(config)
    if served_store is not None:  # validated as the settings file's key would be
        given = {**settings.serving.model_dump(), "served_store": served_store}
        serving = parse(ServingConfig, given, "--served-store")
        settings = settings.model_copy(update={"serving": serving})
    features = _features_cfg(config, online_store=store)
    if in_memory(features.online_store):  # each replica would open its own, empty
        raise ConfigError(
            f"--store: {features.online_store!r} is in memory: every replica would start with "
            "an empty store and serve every user as unknown; write one with `vidrec features "
            "materialize --store sqlite:///path.db` and pass it (or features.online_store)",
            key="store",
        )
    if (db := sqlite_file(features.online_store)) is not None and not db.exists():
        raise ConfigError(  # opening it would create it empty: the same, unnoticed
            f"--store: {db} does not exist: write it with `vidrec features materialize "
            f"--store {features.online_store}`",
            key="store",
        )
    routes = (routes or settings.rollout.routes).resolve()  # replicas run elsewhere
    log_dir = _writable_dir((log_dir or routes.parent / "log").resolve(), "--log-dir")
    bundles = _serving_bundles(settings, routes, model_version)
    check_fits(settings.serving, len(bundles))
    app_ = Deployment(bundles=bundles, routes=routes, log_dir=log_dir, cfg=settings.serving)
    fault_file = faults.resolve() if faults else None

    def load() -> Any:
        import logging

        import ray
        from ray import serve as ray_serve
        from ray.serve.config import ProxyLocation

        from vidrec.config import RAY_CPUS
        from vidrec.serving.deployments import run_apps

        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level=logging.WARNING)  # fmt: skip
        ray_serve.start(proxy_location=ProxyLocation.Disabled)
        return run_apps({v: str(b) for v, b in bundles.items()}, features, settings.serving,
                        fault_file)  # fmt: skip

    def load_version(version: str) -> tuple[Path, Any]:
        from vidrec.registry.registry import open_registry
        from vidrec.serving.deployments import run_apps

        bundle = open_registry(settings.registry).download(version, routes.parent / "bundles")
        handles = run_apps({version: str(bundle)}, features, settings.serving, fault_file)
        return bundle, handles[version]

    emit(
        {"url": f"http://{host}:{port}", "versions": list(bundles), "routes": str(routes),
         "log_dir": str(app_.log_dir)},
        json_out,
        "serving",
    )  # fmt: skip
    sys.stdout.flush()
    versions = VersionApps(load_version, stop_app, room(settings.serving))
    serve_forever(load, app_, port, host=host, versions=versions)


@app.command()
def traffic(
    url: str = typer.Option(
        "http://127.0.0.1:8080", callback=_http_url, help="a running `vidrec serve`"
    ),
    data: Path = typer.Option(Path("out/demo/sim"), help="simulated log (with oracle/)"),
    rate: float = typer.Option(
        20.0, callback=_finite, min=0.1, help="requests per second (open loop)"
    ),
    duration: float = typer.Option(30.0, callback=_finite, min=0.1, help="seconds to run"),
    k: int = typer.Option(10, min=1, max=500, help="videos per request"),
    seed: int = typer.Option(0, min=0, help="seed of users and outcomes"),
    drift: str = typer.Option(
        None, help="inject a drift scenario: new-market (users of an unseen market)"
    ),
    drift_share: float = typer.Option(
        0.6, callback=_finite, min=0, max=1, help="share of requests it affects"
    ),
    drift_after: float = typer.Option(
        0.0, callback=_finite, min=0, help="seconds of normal traffic before it"
    ),
    json_out: bool = JSON,
) -> None:
    """Replay simulated users against an endpoint and send their outcomes to /v1/feedback."""
    from vidrec.traffic.replay import Drift, replay
    from vidrec.traffic.summary_lines import render
    from vidrec.traffic.users import SimulatedUsers

    if drift not in (None, "new-market"):
        raise InvalidInput(f"--drift: unknown scenario {drift!r}; use new-market", key="drift")
    injected = Drift(drift_share, int(drift_after * rate)) if drift else None
    users = SimulatedUsers.load(data)
    with progress(int(rate * duration), "requests") as tick:
        summary = replay(url, users, rate, duration, k, seed, tick, injected)
    emit(summary, json_out, "traffic", render(summary))
    if summary["planned"] and not summary["ok"]:  # nothing measured: say so, exit 1
        sys.stderr.write(f"vidrec: no request was answered: is `vidrec serve` running at {url}?\n")
        raise typer.Exit(1)


@bench_app.command("serve")
def bench_serve(
    sizes: str = typer.Option("100000,1000000", help="catalogue sizes (synthetic videos added)"),
    rates: str = typer.Option("25,50,100", help="offered requests/s, open loop"),
    duration: float = typer.Option(
        15.0, callback=_finite, min=2, help="seconds per rate (3 s warm-up)"
    ),
    shadow_cycles: int = typer.Option(
        2, min=1, help="shadow at 100 %: cycles of four runs (off, on, on, off; then reversed)"
    ),
    shadow_noop: bool = typer.Option(
        False, help="shadow also to a no-op challenger (calls and bookkeeping, no model work)"
    ),
    out: Path = typer.Option(Path("out/bench"), help="report directory"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """No-op Ray Serve app vs our endpoint vs in-process, p50/p95/p99 per rate and size."""
    from vidrec.bench.serve import run

    sizes_n, rates_f = _positive(sizes, "--sizes", int), _positive(rates, "--rates", float)
    settings = _settings(config)
    # Ray's driver prints its actors' last words to stdout: that is for the one summary
    with contextlib.redirect_stdout(sys.stderr):
        report = run(
            settings, sizes_n, rates_f, duration, out / "serve", shadow_cycles, shadow_noop
        )
    from vidrec.bench.serve_table import table, verdict_lines

    lines = [*table(report), "", *verdict_lines(report["verdict"]), "",
             f"report {report['report']}, table {report['table']}, "
             f"plot {report['plot']}"]  # fmt: skip
    emit(report, json_out, "serving benchmark", lines)


@bench_app.command("drift")
def bench_drift(
    scale: str = typer.Option("small", help="simulated platform size"),
    days: int = typer.Option(42, min=6, help="simulated days per scenario"),
    onset_day: int = typer.Option(36, min=4, help="day the scenario's change starts"),
    window_hours: float = typer.Option(
        4.0, callback=_finite, min=0.5, help="monitor window (simulated hours)"
    ),
    window_requests: int = typer.Option(
        2000, min=10, help="at most this many of a window's requests (sampled beyond)"
    ),
    seed: int = typer.Option(0, min=0, help="seed of the simulated platforms"),
    seeds: int = typer.Option(3, min=1, help="platforms each scenario with an onset runs"),
    quiet_seeds: int = typer.Option(
        6, min=1, help="platforms the `none` scenario runs (more quiet windows to count)"
    ),
    scenarios: str = typer.Option(
        ",".join(SCENARIOS), help="comma-separated scenarios to run (default: all)"
    ),
    out: Path = typer.Option(Path("out/bench"), help="report directory"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Drift monitor on the simulator's scenarios: false alarms, detection delay (JSON, PNG)."""
    from vidrec.bench.drift import run
    from vidrec.bench.drift_table import lines

    if onset_day >= days:
        raise InvalidInput(f"--onset-day ({onset_day}) must be < --days ({days})", key="onset_day")
    chosen = tuple(x.strip() for x in scenarios.split(",") if x.strip())
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        raise InvalidInput(f"--scenarios: unknown {unknown or 'none given'}; choose from "
                           f"{', '.join(SCENARIOS)}", key="scenarios")  # fmt: skip
    with step_status(json_out) as on_step:
        report = run(_settings(config), out / "drift", scale, days, onset_day, window_hours,
                     window_requests, seed, seeds, quiet_seeds, chosen, tick=on_step)  # fmt: skip
    emit(report, json_out, "drift benchmark", lines(report))


def _serving_bundles(settings: Settings, routes: Path, pinned: str | None) -> dict[str, Path]:
    """Champion and challenger bundles downloaded beside the route table, which is written
    (champion only, no canary) when it does not exist yet. A pinned version is served
    alone, and its route table is rewritten to say so."""
    from vidrec.errors import NotFound
    from vidrec.registry.registry import open_registry
    from vidrec.serving.file_routes import FileRouteSource
    from vidrec.serving.routing import RouteTable

    reg = open_registry(settings.registry)
    if pinned:
        version = str(reg.get(pinned).version)
        bundle = reg.download(version, routes.parent / "bundles")
        FileRouteSource(routes).set(RouteTable(champion=version))
        return {version: bundle}
    try:
        champion = reg.get("champion")
    except NotFound as exc:  # say what would make one
        raise NotFound(
            f"{exc.message}: nothing to serve. `vidrec train --data DIR` registers a first "
            "champion; after `make demo`, `make serve` (--config out/demo/vidrec.toml) serves "
            "the demo's registry",
            **exc.details,
        ) from exc
    try:
        challenger: Any = reg.get("challenger")
    except NotFound:
        challenger = None
    versions = [v for v in (champion, challenger) if v is not None]
    dest = routes.parent / "bundles"
    bundles = {str(v.version): reg.download(str(v.version), dest) for v in versions}
    if not routes.exists():
        table = RouteTable(
            champion=str(champion.version),
            challenger=str(challenger.version) if challenger else None,
        )
        FileRouteSource(routes).set(table)
    return bundles


@registry_app.command("list")
def registry_list(config: Path = CONFIG, json_out: bool = JSON) -> None:
    """Registered versions, newest first, with aliases."""
    from vidrec.registry.registry import open_registry

    reg = open_registry(_settings(config).registry)
    versions = [_version_summary(v) for v in reg.versions()]
    emit({"versions": versions}, json_out, "registry")


@registry_app.command("show")
def registry_show(
    ref: str = typer.Argument(..., help="champion | challenger | version number"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """One version: manifest, metrics, gates."""
    from vidrec.registry.registry import open_registry

    info = open_registry(_settings(config).registry).get(ref)
    emit({**_version_summary(info), "manifest": info.manifest.model_dump()}, json_out, ref)


@registry_app.command("alias")
def registry_alias(
    alias: str = typer.Argument(..., help="champion | challenger"),
    version: int = typer.Argument(...),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Point an alias at a version (rollouts do this; by hand for recovery)."""
    from vidrec.registry.registry import open_registry

    reg = open_registry(_settings(config).registry)
    reg.set_alias(alias, version)
    emit(_version_summary(reg.get(str(version))), json_out, f"{alias} -> v{version}")


def _version_summary(v: Any) -> dict[str, Any]:
    return {
        "version": v.version,
        "aliases": v.aliases,
        "created_at": v.created_at,
        "schema_hash": v.manifest.schema_hash,
        "metrics": v.manifest.metrics,
        "tags": v.tags,
    }


@monitor_app.command("run")
def monitor_run(
    runs: int = typer.Option(None, min=1, help="stop after this many runs (default: forever)"),
    host: str = typer.Option("127.0.0.1", help="address of the monitor's /metrics"),
    port: int = typer.Option(
        None, min=1, max=65535, help="port of /metrics (default: monitoring.monitor_port)"
    ),
    out: Path = typer.Option(Path("out/monitor"), help="event log, bundles, retraining runs"),
    retrain_job: str = typer.Option(
        None, help="in a cluster: retrain as a Job made from this CronJob, not in this process"
    ),
    namespace: str = typer.Option(
        None, envvar="POD_NAMESPACE", help="--retrain-job: the namespace of the CronJob"
    ),
    kubeconfig: Path = typer.Option(None, help="default: $KUBECONFIG, ~/.kube/config, in-cluster"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Compare each serving window with its model's reference; retrain on sustained drift."""
    import signal
    import threading

    from vidrec.monitoring.alibi_detector import alibi_detectors
    from vidrec.monitoring.metrics import MonitorMetrics
    from vidrec.monitoring.monitor import DriftMonitor
    from vidrec.monitoring.prometheus import PrometheusProvider
    from vidrec.monitoring.reference import References
    from vidrec.pipeline.metrics import PipelineCollector
    from vidrec.registry.registry import open_registry

    settings = _settings(config)
    cfg = settings.monitoring
    retrainer = _retrainer(settings, config, out, retrain_job, namespace, kubeconfig)
    metrics = MonitorMetrics()
    metrics.registry.register(PipelineCollector([*cfg.pipeline_runs, out / "runs"]))
    _metrics_http(host, port, cfg.monitor_port, "monitoring.monitor_port", metrics.registry)
    monitor = DriftMonitor(
        cfg,
        PrometheusProvider(cfg.prometheus_url),
        References(open_registry(settings.registry), out / "bundles"),
        retrainer=retrainer,
        events=out / "events.jsonl",
        metrics=metrics,
        **alibi_detectors(cfg),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    done = monitor.run(stop, runs)
    emit({**done, "events": str(out / "events.jsonl"),
          "retraining_running": monitor.retrainer.running}, json_out, "drift monitor")  # fmt: skip
    if done["runs"] and done["results"].get("error") == done["runs"]:  # nothing was assessed
        sys.stderr.write(f"vidrec: every run failed: {done['last_error']['message']}\n")
        raise typer.Exit(1)


def _retrainer(
    settings: Settings, config: Path | None, out: Path, job: str | None, namespace: str | None,
    kubeconfig: Path | None,
) -> Retrainer:  # fmt: skip
    """A Job from CronJob `job` of `namespace`, else `vidrec train` beside the monitor."""
    if job is None:
        from vidrec.monitoring.retrain import LocalRetrainer

        cfg = settings.monitoring
        return LocalRetrainer(cfg.retrain_data, config.resolve() if config else None, out / "runs")
    if not namespace:
        raise ConfigError("--retrain-job needs --namespace (or $POD_NAMESPACE)", key="namespace")
    from vidrec.monitoring.job_retrainer import JobRetrainer
    from vidrec.rollout.kube import kube_api

    return JobRetrainer(kube_api(kubeconfig), namespace, job)


@monitor_app.command("rules")
def monitor_rules(
    out: Path = typer.Option(Path("out/monitor/prometheus"), help="where to write the files"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Write prometheus.yml (scrape config) and rules.yml (recording + alerting rules)."""
    from vidrec.monitoring.rules import write_prometheus_files

    files = write_prometheus_files(_settings(config).monitoring, out)
    emit({k: str(v) for k, v in files.items()}, json_out, "prometheus files")


@chart_app.command("generate")
def chart_generate(
    chart: Path = typer.Option(Path("charts/vidrec"), help="the chart directory"),
    check: bool = typer.Option(False, help="write nothing; exit 1 if a file is out of date"),
    json_out: bool = JSON,
) -> None:
    """Write the chart's CRDs, rules, values.yaml and values.schema.json from the code."""
    from vidrec.deploy.chart import generate

    files = generate(chart, check=check)
    stale = sorted(k for k, v in files.items() if v == "differs")
    emit({"files": files, "stale": stale}, json_out, "chart files")
    if stale:
        raise typer.Exit(1)


@dashboards_app.command("render")
def dashboards_render(
    prometheus: str = typer.Option(
        "http://127.0.0.1:9090", callback=_http_url, help="the Prometheus to query"
    ),
    since: float = typer.Option(
        3600.0, callback=_finite, min=60, help="seconds of history to draw"
    ),
    until: float = typer.Option(
        None, callback=_finite, help="epoch seconds the history ends (default: now)"
    ),
    window: str = typer.Option(
        "1m", callback=_duration, help="rate window standing in for $__rate_interval"
    ),
    out: Path = typer.Option(Path("out/dashboards"), help="where the PNGs and summary go"),
    json_out: bool = JSON,
) -> None:
    """Draw every dashboard's panels from a Prometheus into PNG previews (no Grafana)."""
    import json

    from vidrec.deploy.preview import overview, render

    end = until or time.time()
    result = render(prometheus, out, end - since, end, window)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    emit({"dashboards": overview(result), "summary": str(out / "summary.json")}, json_out,
         "dashboard previews")  # fmt: skip


KUBE = typer.Option(
    None,
    "--kube",
    help="NAMESPACE/NAME of a ModelRollout in the cluster $KUBECONFIG points at (handled by "
    "`vidrec rollout operator`); default: the local rollout file",
)


def _store(settings: Settings, kube: str | None) -> RolloutStore:
    """The local rollout file, or with `--kube NS/NAME` that ModelRollout."""
    if kube is not None:
        return _kube_store(kube)
    from vidrec.rollout.local import open_store

    return open_store(settings)


def _kube_store(kube: str) -> ModelRolloutStore:
    from vidrec.rollout.k8s_store import ModelRolloutStore, parse_ref
    from vidrec.rollout.kube import kube_api

    return ModelRolloutStore(kube_api(), *parse_ref(kube))


@rollout_app.command("start")
def rollout_start(
    version: str = typer.Argument(..., help="registry version to release as the challenger"),
    kube: str = KUBE,
    wait: float = typer.Option(
        10.0, callback=_finite, min=0, help="--kube: seconds to wait for the operator"
    ),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Start releasing VERSION: shadow, then canary steps, then promotion (by the controller)."""
    from vidrec.rollout.local import await_rollout, summary

    settings = _settings(config)
    if kube is not None:
        from vidrec.rollout.k8s_store import point_at

        store = _kube_store(kube)
        policy = settings.rollout.policy.model_dump(mode="json") if config else None
        point_at(store, version, policy, {"inferenceService": store.name})
        ro = await_rollout(store, lambda ro: ro.spec.version == version, wait)
        waiting = {
            "version": version,
            "phase": None,
            "note": "not started yet: is the operator running?",
        }
        out = summary(ro) if ro else waiting
        emit(out, json_out, f"rollout of v{version}")
        return
    from vidrec.registry.registry import open_registry
    from vidrec.rollout.local import open_router, start_rollout

    reg = open_registry(settings.registry)
    ro = start_rollout(_store(settings, None), open_router(settings), reg, version,
                       settings.rollout.policy)  # fmt: skip
    emit(summary(ro), json_out, f"rollout of v{version}")


@rollout_app.command("status")
def rollout_status(
    history: int = typer.Option(20, min=0, help="last history entries shown"),
    kube: str = KUBE,
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Phase, weight, each check's last value vs threshold, and the history."""
    from vidrec.errors import NotFound
    from vidrec.rollout.local import summary

    ro = _store(_settings(config), kube).get()
    if ro is None:
        raise NotFound("no rollout has been started (vidrec rollout start VERSION)")
    emit(summary(ro, history), json_out, f"rollout of v{ro.spec.version}")


WAIT = typer.Option(10.0, min=0, help="seconds to wait for the controller to act on it")


def _request(
    action: Any, config: Path | None, wait: float, json_out: bool, kube: str | None = None
) -> None:
    from vidrec.rollout.local import await_request, request, summary

    store = _store(_settings(config), kube)
    req, replaced = request(store, action)
    asked: dict[str, Any] = {"request": req.model_dump()}
    if replaced is not None:  # one request at a time: the unhandled one is dropped, said so
        asked["replaced"] = replaced.model_dump()
        sys.stderr.write(f"vidrec: replaces request #{replaced.id} ({replaced.action}), "
                         "not handled yet: it will not be\n")  # fmt: skip
    done = await_request(store, req, wait)
    if done is None:
        note = "not handled yet: is `vidrec rollout run` (or the operator) running?"
        out = {**asked, "handled": False, "note": note}
    elif done.status.handled_request != req.id:  # a later request came and went first
        note = f"request #{done.status.handled_request} was handled after it: see `status`"
        out = {**asked, "handled": None, "note": note, **summary(done, history=2)}
    else:
        out = {**asked, "handled": True, **summary(done, history=1)}
    emit(out, json_out, action)
    if out["handled"] and done is not None and done.status.history[-1].action == "refuse":
        raise typer.Exit(1)  # handled: the controller recorded what it did, or refused


@rollout_app.command("promote")
def rollout_promote(
    force: bool = typer.Option(False, "--force", help="promote even if the analysis failed"),
    wait: float = WAIT,
    kube: str = KUBE,
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """Promote now (skipping the remaining steps) if the last analysis passed."""
    _request("force_promote" if force else "promote", config, wait, json_out, kube)


def _request_command(action: str, doc: str) -> None:
    """`vidrec rollout ACTION`: a request the running controller handles."""

    def command(
        wait: float = WAIT, kube: str = KUBE, config: Path = CONFIG, json_out: bool = JSON
    ) -> None:
        _request(action, config, wait, json_out, kube)

    command.__doc__ = doc
    rollout_app.command(action)(command)


for _action, _doc in (
    ("abort", "Stop the rollout: all traffic back to the champion; the version is not marked bad."),
    ("rollback", "Roll back now: all traffic to the champion, the version marked rolled back."),
    ("pause", "Hold the current weight; no analysis until resumed."),
    ("resume", "Carry on after a pause (the failure and inconclusive counts start again)."),
):
    _request_command(_action, _doc)


@rollout_app.command("run")
def rollout_run(
    until_done: bool = typer.Option(False, help="exit once the rollout has ended"),
    timeout: float = typer.Option(
        None, callback=_finite, min=0, help="exit after this many seconds"
    ),
    host: str = typer.Option("127.0.0.1", help="address of the controller's /metrics"),
    port: int = typer.Option(
        None, min=1, max=65535, help="port of /metrics (default: rollout.metrics_port)"
    ),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """The rollout controller: analyse every interval, step, promote or roll back."""
    import signal
    import threading
    import time

    from vidrec.rollout.local import open_controller, summary
    from vidrec.rollout.metrics import RolloutMetrics

    settings = _settings(config)
    metrics = RolloutMetrics()
    _metrics_http(host, port, settings.rollout.metrics_port, "rollout.metrics_port",
                  metrics.registry)  # fmt: skip
    controller = open_controller(settings, metrics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    actions: list[str] = []
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        action = controller.tick()
        if action:
            actions.append(action)
        ro = controller.store.get()
        if until_done and ro is not None and ro.status.finished:
            break
        stop.wait(0.5)
    ro = controller.store.get()
    emit({"actions": actions, **(summary(ro, history=5) if ro else {"phase": None})},
         json_out, "rollout controller")  # fmt: skip


@rollout_app.command("operator")
def rollout_operator(
    namespace: str = typer.Option(..., envvar="POD_NAMESPACE", help="the namespace it watches"),
    peering: str = typer.Option(
        None, help="KopfPeering object shared by the replicas: one acts at a time (none: alone)"
    ),
    kubeconfig: Path = typer.Option(None, help="default: in-cluster, else ~/.kube/config"),
    interval: float = typer.Option(
        2.0, callback=_finite, min=0.1, help="seconds between passes per object"
    ),
    host: str = typer.Option("127.0.0.1", help="address of /metrics and /healthz"),
    port: int = typer.Option(
        None, min=1, max=65535, help="port of /metrics (default: rollout.metrics_port)"
    ),
    health_port: int = typer.Option(8081, min=1, max=65535, help="port of kopf's /healthz"),
    config: Path = CONFIG,
    json_out: bool = JSON,
) -> None:
    """The ModelRollout operator (in a cluster): the rollout controller for each ModelRollout
    of NAMESPACE, with status, history and Kubernetes Events on the object."""

    from vidrec.monitoring.prometheus import PrometheusProvider
    from vidrec.registry.registry import open_registry
    from vidrec.rollout.kopf_host import run
    from vidrec.rollout.kube import kube_api
    from vidrec.rollout.measure import PrometheusMeasurer
    from vidrec.rollout.metrics import RolloutMetrics
    from vidrec.rollout.operator import Operator, router_factory

    settings = _settings(config)
    api = kube_api(kubeconfig)
    metrics = RolloutMetrics()
    metrics_port = _metrics_http(host, port, settings.rollout.metrics_port,
                                 "rollout.metrics_port", metrics.registry)  # fmt: skip
    measurer = PrometheusMeasurer(PrometheusProvider(settings.monitoring.prometheus_url))
    op = Operator(api, namespace, measurer, open_registry(settings.registry),
                  router_factory(api, namespace, settings), metrics)  # fmt: skip
    health = f"http://{host}:{health_port}/healthz"
    emit({"namespace": namespace, "peering": peering, "metrics": f"http://{host}:{metrics_port}",
          "health": health}, json_out, "ModelRollout operator")  # fmt: skip
    sys.stdout.flush()
    run(op, interval_s=interval, peering=peering, liveness=health)


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo")),
    scale: str = typer.Option("demo"),
    seed: int = typer.Option(0, min=0),
    json_out: bool = JSON,
) -> None:
    """The lifecycle on embedded defaults: simulate -> features -> skew check -> leakage
    guard -> train -> serve + monitor + drift -> retrain -> rollout; exit 1 when any of
    its checks fails (`<out>/summary.json` holds the whole summary)."""
    from vidrec.demo import run
    from vidrec.demo_summary import render

    summary = run(out, scale, seed)
    emit(summary, json_out, "demo", render(summary))
    if not summary["ok"]:
        raise typer.Exit(1)


def _metrics_http(host: str, given: int | None, default: int, setting: str, registry: Any) -> int:
    """/metrics on `given` or the settings' port; one taken is a 409 naming where it came
    from (--port, or `setting`). Returns the port."""
    from prometheus_client import start_http_server

    port = given or default
    ensure_free(host, port, "--port" if given else setting)
    start_http_server(port, addr=host, registry=registry)
    return port


def _fail(exc: VidrecError, as_json: bool, show: Callable[[], None] | None = None) -> NoReturn:
    """The error as the one JSON line (`--json`) and for people on stderr; exit code 2."""
    if as_json:
        sys.stdout.write(orjson.dumps(exc.to_dict()).decode() + "\n")
    if show is None:
        sys.stderr.write(f"vidrec: error: {exc.message}\n")
    else:
        show()
    sys.exit(2)


def usage_error(exc: typer.TyperException) -> ConfigError:
    """A command-line usage error (unknown verb or option, bad or missing value) as a
    ConfigError naming the option; typer raises its own copy of click's exceptions."""
    param = getattr(exc, "param", None)
    key = getattr(exc, "option_name", None) or (param.opts[0] if param and param.opts else None)
    return ConfigError(exc.format_message(), **({"key": key} if key else {}))


def file_error(exc: OSError) -> InvalidInput:
    """A file or directory the command could not read or write, named."""
    name = exc.filename
    message = f"{name}: {exc.strerror}" if name is not None and exc.strerror else str(exc)
    return InvalidInput(message, **({"file": str(name)} if name is not None else {}))


def main() -> None:
    as_json = "--json" in sys.argv
    try:
        # without standalone mode click returns typer.Exit's code instead of raising it
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("vidrec: aborted\n")
        sys.exit(1)
    except VidrecError as exc:
        _fail(exc, as_json)
    except typer.TyperException as exc:  # usage; `vidrec` alone: the help, as click shows it
        _fail(usage_error(exc), as_json, show=getattr(exc, "show", None))
    except OSError as exc:  # one naming a path (missing, a file where a directory goes, ...)
        if exc.filename is None:
            raise
        _fail(file_error(exc), as_json)


if __name__ == "__main__":
    main()
