"""The Ray Serve application behind the real KServe ModelServer (V1 and V2 protocols).

`VidrecModel` is a `kserve.Model` living in the server process in front of
the model versions' Serve apps: it parses both protocols into
`RecommendRequest`s (a bad field is a 422 naming it), routes them through the
`Router` (variant, deadline, fallback, shadow), maps failures to statuses
(never a Ray traceback in a 500: KServe's stock `RayModel` does that and then
drops the connection), records the metrics users scrape on this process's
`/metrics`, remembers what it served for `POST /v1/feedback`, and writes the
impression log.
The HTTP server starts before the Ray app is up: live at once, 503 until ready.
Import this module only after `prepare_ray_env()`: Ray reads the variable at import.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def prepare_ray_env() -> None:
    # without this Ray binds 0.0.0.0 / the routable address even when told 127.0.0.1
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


prepare_ray_env()
# kserve parses sys.argv when imported (argparse with abbreviations: our --config would be
# taken for its --configure_logging); let it see no arguments
_argv, sys.argv = sys.argv, sys.argv[:1]
import kserve  # noqa: E402
import kserve.model_server  # noqa: E402
import orjson  # noqa: E402

sys.argv = _argv
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.requests import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve import errors as kserve_errors  # noqa: E402
from kserve.model_server import FASTAPI_APP_IMPORT_STRING  # noqa: E402
from kserve.protocol.dataplane import DataPlane  # noqa: E402
from kserve.protocol.rest.server import RESTServer  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

from vidrec.config import ServingConfig, first_error, parse  # noqa: E402
from vidrec.errors import (  # noqa: E402
    Conflict,
    InvalidInput,
    NotFound,
    NotReady,
    SchemaError,
    VidrecError,
)
from vidrec.features.bins import FeatureBins  # noqa: E402
from vidrec.features.definitions import FEATURES  # noqa: E402
from vidrec.registry.bundle import read_manifest  # noqa: E402
from vidrec.serving import gc_pauses  # noqa: E402
from vidrec.serving.api import RecommendRequest  # noqa: E402
from vidrec.serving.feedback import FeedbackRequest, FeedbackResult, ImpressionLog  # noqa: E402
from vidrec.serving.file_routes import FileRouteSource  # noqa: E402
from vidrec.serving.metrics import ServingMetrics  # noqa: E402
from vidrec.serving.recommender import Served  # noqa: E402
from vidrec.serving.router import Router, ShadowResult  # noqa: E402
from vidrec.serving.routing import cohort  # noqa: E402
from vidrec.serving.served import open_served  # noqa: E402
from vidrec.serving.shadow import Comparison  # noqa: E402
from vidrec.serving.versions import idle_since, plan  # noqa: E402

log = logging.getLogger("vidrec.serving")
# kserve 0.20's V1 endpoint answers with FastAPI's ORJSONResponse, which FastAPI now
# deprecates: a warning on every server's first request (theirs to change)
warnings.filterwarnings("ignore", r"ORJSONResponse is deprecated")

MAX_INSTANCES = 64
MAX_BODY_BYTES = 256 * 1024
TICK_S = 1.0
EXPIRE_EVERY_S = 3_600.0  # how often the log's retention is applied
V2_IO = [{"name": "request", "datatype": "BYTES", "shape": [-1]}]
V2_OUT = [{"name": "response", "datatype": "BYTES", "shape": [-1]}]


def parse_instances(payload: Any) -> list[RecommendRequest]:
    """V1 `{"instances": [...]}` or V2 with one BYTES input `request` of JSON objects."""
    if isinstance(payload, InferRequest):
        request = v2_request(payload)
        if request.datatype != "BYTES":
            raise SchemaError(f"V2: input 'request' is {request.datatype}, not BYTES (one JSON "
                              "object each)", key="request.datatype")  # fmt: skip
        if math.prod(request.shape) != len(request.data):  # else rows would go unanswered
            raise SchemaError(f"V2: input 'request' has shape {request.shape} but "
                              f"{len(request.data)} elements", key="request.shape")  # fmt: skip
        items: list[Any] = []
        for i, raw in enumerate(request.data):
            if not isinstance(raw, str | bytes | bytearray):  # str() made Python's repr of it
                raise SchemaError(f"V2: input 'request' element {i} is a JSON "
                                  f"{_json_type(raw)}, not a string holding one JSON object "
                                  "(BYTES)", key="request.data")  # fmt: skip
            try:
                items.append(json_body(raw))
            except ValueError as exc:
                raise InvalidInput(f"V2: input 'request' element {i} is not JSON: {exc}") from None
    elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        items = payload["instances"]
    else:
        raise InvalidInput('V1: expected a JSON object with an "instances" list')
    if not items:
        raise InvalidInput("no instances")
    if len(items) > MAX_INSTANCES:
        raise TooLarge(f"at most {MAX_INSTANCES} instances per request, got {len(items)}")
    return [parse(RecommendRequest, x, f"instances[{i}]", SchemaError) for i, x in enumerate(items)]


def _json_type(x: Any) -> str:
    kinds = ((bool, "boolean"), (int | float, "number"), (dict, "object"), (list, "array"))
    return next((name for kind, name in kinds if isinstance(x, kind)), "null")


def v2_request(payload: InferRequest) -> Any:
    """The one input a V2 request may have; another input, or an output this model does
    not answer, is refused rather than ignored."""
    names = [i.name for i in payload.inputs]
    if "request" not in names:
        raise InvalidInput("V2: missing input 'request' (BYTES, one JSON object each)")
    for name in names:
        if name != "request" or names.count(name) > 1:
            raise SchemaError(f"V2: input {name!r} " + ("is given twice" if name == "request"
                              else "is not one this model takes (only 'request')"),
                              key="inputs")  # fmt: skip
    for out in payload.request_outputs or []:
        if out.name != "response":
            raise SchemaError(f"V2: output {out.name!r} is not one this model answers "
                              "(only 'response')", key="outputs")  # fmt: skip
    return payload.inputs[names.index("request")]


def json_body(raw: bytes | bytearray | str) -> Any:
    """JSON as KServe's V1 route reads it (orjson): nesting over 1,024 levels, NaN and
    invalid UTF-8 are a ValueError (the json module recursed into a RecursionError: 500)."""
    return orjson.loads(raw)


class TooLarge(VidrecError):
    http_status = 413
    code = "too_large"


class NotJson(VidrecError):
    http_status = 415
    code = "unsupported_media_type"


class HttpError(VidrecError):
    """An error the HTTP layer raised before vidrec's code ran, with its own status."""

    code = "http_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


class Unsupported(VidrecError):
    http_status = 501
    code = "not_implemented"


# what KServe raises itself (a V1 body it cannot decode, a model name it does not serve)
# -> vidrec's error of the same status; KServe's own answer is {"error": "<message>"}
KSERVE_ERRORS: dict[type[Exception], type[VidrecError]] = {
    kserve_errors.InvalidInput: InvalidInput,
    kserve_errors.ModelNotFound: NotFound,
    kserve_errors.ModelNotReady: NotReady,
    kserve_errors.ServerNotReady: NotReady,
    kserve_errors.ServerNotLive: NotReady,
    kserve_errors.UnsupportedProtocol: Unsupported,
    kserve_errors.InferenceError: VidrecError,
    NotImplementedError: Unsupported,
}


@dataclass(frozen=True)
class Deployment:
    """What the server process knows of the app it fronts."""

    bundles: dict[str, Path]  # model version -> bundle directory
    routes: Path
    log_dir: Path | None
    cfg: ServingConfig


class VidrecModel(kserve.Model):  # type: ignore[misc]
    def __init__(
        self, name: str, app: Deployment, metrics: ServingMetrics, timeout_s: float = 5.0
    ) -> None:
        super().__init__(name)
        self.app, self.metrics, self.timeout_s = app, metrics, timeout_s
        self.router = Router(
            FileRouteSource(app.routes),
            app.bundles,
            app.cfg,
            lambda version, kind, size: metrics.batch.labels(version, kind).observe(size),
            self._shadow_result,
        )
        self.shadow_lines: list[str] = []  # for log/shadow.jsonl at the next tick
        self.attached = False
        cfg = app.cfg
        # a claim outlives any request: it is answered (or degraded) within timeout_s
        served = open_served(cfg.served_store, cfg.remember_requests, cfg.served_ttl_s,
                             hold_s=timeout_s + 30)  # fmt: skip
        rejected, dropped = metrics.log_rejected, metrics.log_dropped
        self.log = ImpressionLog(app.log_dir, flush_rows=cfg.log_flush_rows, requests=served,
                                 on_reject=lambda t, n: rejected.labels(t).inc(n),
                                 on_drop=lambda t, n: dropped.labels(t).inc(n))  # fmt: skip
        self.ticker: asyncio.Task[None] | None = None
        self.last_flush = time.monotonic()
        self.last_expiry = -math.inf  # the first tick applies the log's retention
        self.created: dict[str, int] = {}
        for version, bundle in app.bundles.items():
            self._know(version, bundle)

    def attach(self, handles: dict[str, Any]) -> None:
        """The version apps are up (model version -> handle): from now on requests are served."""
        self.router.attach(handles)
        self.attached = self.ready = True
        self._model_gauges()  # scraped from the start, not from the first request's tick

    def add_version(self, version: str, bundle: Path, handle: Any) -> None:
        """Serve a version loaded after start (the route table named it: a new challenger)."""
        self._know(version, bundle)
        self.router.add(version, bundle, handle)
        self._model_gauges()

    def _know(self, version: str, bundle: Path) -> None:
        """What metrics need of a version: its reference bins, its series, its age."""
        ref = FeatureBins.load(bundle / "reference" / "features.json", FEATURES.model_inputs)
        self.metrics.features.set_reference(version, ref)
        self.metrics.declare(version)
        self.created[version] = read_manifest(bundle).created_at

    def load(self) -> bool:
        if not self.attached:  # KServe calls this for a request that comes too early
            raise NotReady("the model is loading (Ray Serve app not up yet); retry shortly")
        self.ready = True
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return V2_IO

    def get_output_types(self) -> list[dict[str, Any]]:
        return V2_OUT

    async def preprocess(self, payload: Any, headers: Any = None) -> Any:
        if isinstance(payload, bytes | str):  # KServe hands on a body declared as not JSON
            declared = (headers or {}).get("content-type")
            raise NotJson(f'V1: the body must be JSON: send "Content-Type: application/json" '
                          f"(got {declared!r})")  # fmt: skip
        return payload, parse_instances(payload)

    async def predict(self, parsed: Any, headers: Any = None, response_headers: Any = None) -> Any:
        self._start_ticker()
        payload, reqs = parsed
        claimed = self._claim(reqs)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            out = await self._served(reqs)
            # remembered first: a store that cannot take them answers 503, counted as nothing
            # else. Remembered, a request's id stays taken
            self.log.served_all([(r, s.response, s.inputs)
                                 for r, s in zip(reqs, out, strict=True)])  # fmt: skip
        except BaseException:  # refused, failed or cancelled: the client may retry its ids
            self.log.requests.release(claimed)
            raise
        for s in out:
            self.metrics.observe(s.response, loop.time() - t0, s.bins)
        return payload, [s.response for s in out]

    async def _served(self, reqs: list[RecommendRequest]) -> list[Served]:
        calls = [self.router.recommend(r) for r in reqs]
        try:
            out: list[Served] = await asyncio.wait_for(asyncio.gather(*calls), self.timeout_s)
        except VidrecError:  # the error handler counts it
            raise
        except Exception as exc:  # the router degrades model failures: this is ours
            raise NotReady(f"recommender unavailable: {type(exc).__name__}") from None
        return out

    def _claim(self, reqs: list[RecommendRequest]) -> list[str]:
        """The request ids clients gave, claimed in the served-request store until their
        requests are remembered. An id names one served request (outcomes join on it,
        training groups a slate's impressions by it): one that repeats another in the body,
        or names a request in flight or still remembered (on any pod sharing the store), is
        refused. A refused or failed request (a 503) leaves its id free to retry."""
        first: dict[str, int] = {}
        for i, r in enumerate(reqs):
            rid = r.request_id
            if rid is not None and rid in first:
                raise SchemaError(f"instances[{i}]: request_id: {rid!r} repeats "
                                  f"instances[{first[rid]}]'s", key="request_id",
                                  source=f"instances[{i}]")  # fmt: skip
            if rid is not None:
                first[rid] = i
        taken = self.log.requests.claim(list(first))
        if taken:
            rid = min(taken, key=first.__getitem__)
            where = f"instances[{first[rid]}]"
            raise Conflict(f"{where}: request_id: {rid!r} is taken by another request (in "
                           "flight or served): give each request an id of its own",
                           key="request_id", source=where)  # fmt: skip
        return list(first)

    async def postprocess(
        self, result: Any, headers: Any = None, response_headers: Any = None
    ) -> Any:
        payload, out = result
        if isinstance(payload, InferRequest):
            data = [r.model_dump_json() for r in out]
            outputs = [InferOutput("response", [len(data)], "BYTES", data)]
            return InferResponse(
                response_id=payload.id or "", model_name=self.name, infer_outputs=outputs
            )
        return {"predictions": [r.model_dump() for r in out]}

    def feedback(self, body: FeedbackRequest) -> FeedbackResult:
        self._start_ticker()
        joined, rejected = self.log.feedback(body.outcomes)
        for j in joined:
            self.metrics.feedback.labels("joined").inc()
            if j.outcome.clicked:
                labels = (j.variant, j.version, cohort(j.user_id))
                self.metrics.clicks.labels(*labels).inc()
                self.metrics.watch.labels(*labels).inc(j.outcome.watch_seconds)
        for r in rejected:
            self.metrics.feedback.labels(r.reason).inc()
        return FeedbackResult(accepted=len(joined), rejected=rejected)

    def _start_ticker(self) -> None:
        if self.ticker is None:
            self.ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bad tick must not stop the next one
                log.exception("serving tick failed")
            await asyncio.sleep(TICK_S)

    def _shadow_result(self, r: ShadowResult) -> None:
        """A shadow result into metrics as it completes. Held until the tick, results
        outlived the collector's young generations, and at 100 % shadow enough of them
        made it walk the oldest: 2-3 full collections per 15 s, stopping the server."""
        resp = r.shadow.response
        self.metrics.observe_model(resp, r.shadow.bins)
        if r.comparison is None:
            self.metrics.shadow.labels("degraded").inc()
            return
        self.metrics.shadow.labels("compared").inc()
        self.metrics.shadow_overlap.labels(resp.model_version).observe(r.comparison.overlap)
        if r.comparison.rank_correlation is not None:
            tau = r.comparison.rank_correlation
            self.metrics.shadow_correlation.labels(resp.model_version).observe(tau)
        if self.app.log_dir is not None:
            # a str: untracked by the collector
            self.shadow_lines.append(_shadow_line(r, r.comparison))

    async def tick(self) -> None:
        """Shadow counts into metrics and the shadow log; model gauges; log flush."""
        report = self.router.drain()
        self.metrics.shadow.labels("dropped").inc(report.dropped)
        self.metrics.shadow.labels("failed").inc(report.failed)
        lines, self.shadow_lines = self.shadow_lines, []
        if lines and self.app.log_dir is not None:
            self._write_shadow(self.app.log_dir, lines)
        self._model_gauges()
        if time.monotonic() - self.last_flush > self.app.cfg.log_flush_s:
            self.log.flush()
            self.last_flush = time.monotonic()
            self.metrics.log_write_failing.set(self.log.error is not None)
            if self.log.error is not None:
                log.warning("the impression log cannot be written: %s", self.log.error)
        if time.monotonic() - self.last_expiry > EXPIRE_EVERY_S:
            self.last_expiry = time.monotonic()
            # listing a week of parts takes a while: not on the loop that answers requests
            deleted = await asyncio.to_thread(self.log.expire, self.app.cfg.log_retention_s)
            if any(deleted.values()):
                log.info("log retention: deleted parts older than %.1f days: %s",
                         self.app.cfg.log_retention_days, deleted)  # fmt: skip

    def _write_shadow(self, log_dir: Path, lines: list[str]) -> None:
        """Appended to log/shadow.jsonl; let go and counted when it cannot be (the tick's
        other work, the log's flush among it, goes on)."""
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / "shadow.jsonl", "a") as f:
                f.writelines(lines)
        except OSError as exc:
            self.metrics.log_dropped.labels("shadow").inc(len(lines))
            log.warning("the shadow log cannot be written: %s: %s", exc.filename, exc.strerror)

    def _model_gauges(self) -> None:
        routes = self.router.routes
        try:
            table = routes.get()
        except VidrecError:  # none in force: requests answer 503 saying why; the tick goes on
            self.metrics.route_table_invalid.set(1)
            return
        self.metrics.route_table_invalid.set(routes.error is not None)
        named = (("champion", table.champion), ("challenger", table.challenger))
        known = [(v, ver) for v, ver in named if ver in self.created]
        self.metrics.serving({v: (ver, self.created[ver]) for v, ver in known})


def _shadow_line(r: ShadowResult, c: Comparison) -> str:
    resp = r.shadow.response
    return (
        json.dumps(
            {
                "request_id": resp.request_id,
                "ts": resp.ts,
                "user_id": resp.user_id,
                "challenger": resp.model_version,
                "served": r.served,
                "shadow": [i.video_id for i in resp.items],
                "overlap": c.overlap,
                "rank_correlation": c.rank_correlation,
            }
        )
        + "\n"
    )


class LoopbackModelServer(kserve.ModelServer):  # type: ignore[misc]
    """KServe's server bound to one address (its uvicorn host is hard-coded to 0.0.0.0),
    started before its model is ready (KServe refuses that; we answer 503 meanwhile, and
    so does `/v2/health/ready`), its errors answered in vidrec's shape (`OurErrors`)."""

    def __init__(self, *args: Any, host: str = "127.0.0.1", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host
        self.dataplane = ModelsReady(model_registry=self.registered_models)

    def _register_and_check_atleast_one_model_is_ready(self, models: list[Any]) -> None:
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging

    def setup_event_loop(self) -> None:
        if self._rest_server:
            self._rest_server.config.host = self.host
        if threading.current_thread() is not threading.main_thread():
            asyncio.set_event_loop(asyncio.new_event_loop())
        super().setup_event_loop()

    def register_signal_handler(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super().register_signal_handler()

    def start(self, models: list[Any]) -> None:
        """KServe's start for one worker without gRPC (what vidrec runs), with `OurErrors`."""
        if self.workers != 1 or self.enable_grpc:
            raise ValueError("vidrec's model server runs one worker and no gRPC")
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = OurErrors(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, access_log_format=self.access_log_format, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )  # fmt: skip
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


class OurErrors(RESTServer):  # type: ignore[misc]
    """KServe's REST server, where the error handlers installed before it starts
    (`install_routes`) win over the ones it installs for the same errors."""

    def _add_exception_handlers(self, app: Any) -> None:
        ours = dict(app.exception_handlers)
        super()._add_exception_handlers(app)
        app.exception_handlers.update(ours)


class ModelsReady(DataPlane):  # type: ignore[misc]
    """Server readiness (`/v2/health/ready`) as the Open Inference Protocol means it: ready
    for inference, every model loaded. KServe's own answers ready as soon as it listens,
    so a client or probe polling it would send requests into 503s while Ray starts."""

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all([await m.healthy() for m in models])


def request_logs(cfg: ServingConfig) -> None:
    """A line per request or none, as `serving.request_logs` says. Call after the server is
    built: KServe configures its loggers then (uvicorn, told log_config=None, leaves them)."""
    for name in ("uvicorn.access", "kserve.trace"):  # KServe's TimingMiddleware: two lines
        logging.getLogger(name).disabled = not cfg.request_logs


def install_routes(metrics: ServingMetrics, model: VidrecModel) -> None:
    """Errors that know their status answer as JSON; bodies over the limit are 413;
    `POST /v1/feedback` joins outcomes to served requests."""
    from kserve.model_server import app

    def answer(exc: VidrecError, counted: bool = True) -> JSONResponse:
        if counted:
            metrics.error(type(exc).__name__, code=exc.http_status)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    async def vidrec_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VidrecError)
        return answer(exc)

    async def feedback(request: Request) -> JSONResponse:
        try:
            raw = json_body(await request.body())
        except ValueError as exc:
            raise InvalidInput(f"feedback body is not JSON: {exc}") from None
        body = parse(FeedbackRequest, raw, "feedback", SchemaError)
        return JSONResponse(model.feedback(body).model_dump())

    async def post_only(request: Request) -> JSONResponse:
        raise HTTPException(405, "Method Not Allowed", headers={"Allow": "POST"})

    async def unparsed(request: Request, exc: Exception) -> JSONResponse:
        # KServe's typed routes (V2 infer) validate the body before our code sees it; the
        # answer is ours all the same (FastAPI's own is {"detail": [...]})
        assert isinstance(exc, RequestValidationError)
        errors, where = exc.errors(), request.url.path
        if errors and errors[0].get("type") == "json_invalid":
            why = errors[0].get("ctx", {}).get("error", "")
            return await vidrec_error(request, InvalidInput(f"{where}: body is not JSON: {why}"))
        key, msg = first_error([{**errors[0], "loc": in_body(errors[0], exc.body)}])
        return await vidrec_error(request, SchemaError(f"{where}: {key}: {msg}", key=key))

    # Errors raised outside vidrec's code answer in the same shape. They are counted only
    # for requests that post something (predictions, feedback): a probe or metadata read
    # (GET, while the model loads, say) is not a request the error ratio is about.
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        # what Starlette refuses itself (an unknown path, a wrong method, a body that is not
        # UTF-8); its own answer is {"detail": "..."}
        assert isinstance(exc, HTTPException)
        why = f"{request.method} {request.url.path}: {exc.detail}"
        out = answer(HttpError(exc.status_code, why), request.method == "POST")
        out.headers.update(exc.headers or {})  # a 405's Allow
        return out

    async def kserve_error(request: Request, exc: Exception) -> JSONResponse:
        ours = KSERVE_ERRORS.get(type(exc))
        # None: a bug; Starlette raises it on after this answer, and uvicorn logs it
        error = ours(str(exc)) if ours else VidrecError(f"internal error: {type(exc).__name__}")
        return answer(error, request.method == "POST")

    app.add_exception_handler(VidrecError, vidrec_error)
    app.add_exception_handler(RequestValidationError, unparsed)
    app.add_exception_handler(HTTPException, http_error)
    for kind in (*KSERVE_ERRORS, Exception):
        app.add_exception_handler(kind, kserve_error)
    app.add_api_route("/v1/feedback", feedback, methods=["POST"])
    # KServe's `GET /v1/models/{name}` (is it ready?) takes "vidrec:predict" for a name:
    # a GET of a V1 verb answered 404 "model not found". These go first and say 405.
    for verb in ("predict", "explain"):
        app.add_api_route(f"/v1/models/{{name}}:{verb}", post_only, methods=["GET"])
        app.router.routes.insert(0, app.router.routes.pop())
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)


class BodyLimit:
    """Bodies over `limit` bytes are refused as they are read (413, `TooLarge`): declared
    too long, at once; sent in chunks, at the chunk that crosses it. Raised inside the
    route, so the answer goes through the error handlers (Starlette's own limit answers
    in plain text)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"").decode()
        chunked = not declared.isdigit()  # then the chunks are counted as they arrive
        seen = 0 if chunked else int(declared)

        def refuse() -> TooLarge:
            return TooLarge(f"request body over {self.limit // 1024} KiB", limit=self.limit)

        async def limited() -> Any:
            nonlocal seen
            if seen > self.limit:
                raise refuse()
            message = await receive()
            if chunked:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise refuse()
            return message

        await self.app(scope, limited, send)


def in_body(error: Any, body: Any) -> list[Any]:
    """A FastAPI validation error's place in the posted JSON. Its `loc` starts with "body"
    and, for a body typed as a union (KServe's V2 `InferenceRequest | bytes`), the member's
    name: no key of the body, and not a missing field's name either."""
    loc = list(error["loc"])
    rest = loc[1:] if loc[:1] == ["body"] else loc
    member = rest and isinstance(rest[0], str) and not (isinstance(body, dict) and rest[0] in body)
    return rest[1:] if member and (len(rest) > 1 or error.get("type") != "missing") else rest


@dataclass(frozen=True)
class VersionApps:
    """How the server loads a version the route table names after start, and unloads one
    it retired (`vidrec.serving.versions`)."""

    load: Callable[[str], tuple[Path, Any]]  # version -> its bundle and app handle
    unload: Callable[[str], None]  # deletes the version's app
    room: int  # versions whose apps the Ray node holds at once


DRAIN_SLACK_S = 5.0  # past a call's deadline, before its version's app may be deleted
RETRY_LOAD_S = 30.0


def watch_routes(model: VidrecModel, apps: VersionApps, poll_s: float = 1.0) -> None:
    """Keep loaded what the route table names and retire what it stopped naming, forever.
    A version that fails to load is retried later; its users stay on the champion
    meanwhile (the router's rule), so nothing fails. An unreadable table changes nothing."""
    cfg = model.app.cfg
    idle: dict[str, float | None] = {}  # the loaded versions are the router's
    retry_at: dict[str, float] = {}
    waiting: tuple[str, ...] = ()
    while True:
        try:
            table = model.router.routes.get()
        except VidrecError:
            time.sleep(poll_s)
            continue
        named = [v for v in (table.champion, table.challenger) if v is not None]
        now = time.monotonic()
        idle = idle_since({v: idle.get(v) for v in model.router.handles}, named, now)
        todo = plan(named, idle, now, cfg.retire_after_s, cfg.deadline_s + DRAIN_SLACK_S,
                    apps.room)  # fmt: skip
        for version in todo.retire:
            _retire(model, apps, version)
        for version in todo.load:
            if retry_at.get(version, 0) <= now and not _load(model, apps, version):
                retry_at[version] = time.monotonic() + RETRY_LOAD_S
        for version in set(todo.no_room) - set(waiting):
            model.metrics.version_changes.labels("no_room").inc()
            log.warning("model version %s waits for room: %d versions loaded, the most Ray's "
                        "CPUs hold (serving.replicas_per_version)", version,
                        len(model.router.handles))  # fmt: skip
        waiting = todo.no_room
        model.metrics.versions_loaded.set(len(model.router.handles))
        time.sleep(poll_s)


def _load(model: VidrecModel, apps: VersionApps, version: str) -> bool:
    try:
        bundle, handle = apps.load(version)
        handle.ping.remote().result(timeout_s=300)
    except Exception:
        log.exception("cannot load model version %s; retrying in %g s", version, RETRY_LOAD_S)
        model.metrics.version_changes.labels("load_failed").inc()
        return False
    model.add_version(version, bundle, handle)
    model.metrics.version_changes.labels("loaded").inc()
    log.warning("loaded model version %s (named by the route table)", version)
    return True


def _retire(model: VidrecModel, apps: VersionApps, version: str) -> None:
    model.router.remove(version)
    try:
        apps.unload(version)
    except Exception:  # its replicas may linger; the router no longer calls them
        log.exception("cannot delete the app of model version %s", version)
    model.metrics.forget(version)
    model.metrics.version_changes.labels("retired").inc()
    log.warning("retired model version %s (not named by the route table)", version)


def serve_forever(
    load: Callable[[], Any], app: Deployment, port: int, name: str = "vidrec",
    host: str = "127.0.0.1", versions: VersionApps | None = None,
) -> None:  # fmt: skip
    """Answer at once (503 until `load()` returns each model version's app handle), serve
    until a signal; the impression log is flushed on the way out. With `versions`, the
    loaded versions follow the route table (`watch_routes`)."""
    metrics = ServingMetrics(REGISTRY)
    gc_pauses.observe(metrics.gc_pauses)
    model = VidrecModel(name, app, metrics)
    install_routes(metrics, model)
    atexit.register(model.log.flush)

    def load_in_background() -> None:
        try:
            handles = load()
            for handle in handles.values():
                handle.ping.remote().result(timeout_s=300)
        except Exception:
            traceback.print_exc()
            os._exit(3)  # the app cannot start: fail loudly, not a server that is never ready
        gc_pauses.freeze()  # before the first request: its one full collection stalls nothing
        model.attach(handles)
        # Ray's GCS and raylet are started with PR_SET_PDEATHSIG, which fires when the
        # *thread* that started them exits: this thread must live as long as the process
        if versions is not None:
            watch_routes(model, versions)
        threading.Event().wait()

    threading.Thread(target=load_in_background, name="load-app", daemon=True).start()
    server = LoopbackModelServer(
        http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False, host=host
    )
    request_logs(app.cfg)
    server.start([model])
