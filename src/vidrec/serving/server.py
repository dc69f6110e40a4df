"""The Ray Serve application behind the real KServe ModelServer (V1 and V2 protocols).

`VidrecModel` is a `kserve.Model` living in the server process around the
Recommender handle: it parses both protocols into `RecommendRequest`s (a bad
field is a 422 naming it), maps failures to statuses (never a Ray traceback in
a 500: KServe's stock `RayModel` does that and then drops the connection),
and records the metrics users scrape on this process's `/metrics`.
Import this module only after `prepare_ray_env()`: Ray reads the variable at import.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
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

sys.argv = _argv
from fastapi.requests import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from vidrec.config import parse  # noqa: E402
from vidrec.errors import InvalidInput, NotReady, SchemaError, VidrecError  # noqa: E402
from vidrec.serving.api import RecommendRequest, RecommendResponse  # noqa: E402
from vidrec.serving.metrics import ServingMetrics  # noqa: E402

MAX_INSTANCES = 64
MAX_BODY_BYTES = 256 * 1024
V2_IO = [{"name": "request", "datatype": "BYTES", "shape": [-1]}]
V2_OUT = [{"name": "response", "datatype": "BYTES", "shape": [-1]}]


def parse_instances(payload: Any) -> list[RecommendRequest]:
    """V1 `{"instances": [...]}` or V2 with one BYTES input `request` of JSON objects."""
    if isinstance(payload, InferRequest):
        inputs = {i.name: i for i in payload.inputs}
        if "request" not in inputs:
            raise InvalidInput("V2: missing input 'request' (BYTES, one JSON object each)")
        items: list[Any] = []
        for raw in inputs["request"].data:
            text = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
            try:
                items.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"V2: input 'request' is not JSON: {exc}") from None
    elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        items = payload["instances"]
    else:
        raise InvalidInput('V1: expected a JSON object with an "instances" list')
    if not items:
        raise InvalidInput("no instances")
    if len(items) > MAX_INSTANCES:
        raise TooLarge(f"at most {MAX_INSTANCES} instances per request, got {len(items)}")
    return [parse(RecommendRequest, x, f"instances[{i}]", SchemaError) for i, x in enumerate(items)]


class TooLarge(VidrecError):
    http_status = 413
    code = "too_large"


class VidrecModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, handle: Any, metrics: ServingMetrics, timeout_s: float = 5.0):
        super().__init__(name)
        self.handle, self.metrics, self.timeout_s = handle, metrics, timeout_s

    def load(self) -> bool:
        self.handle.ping.remote().result(timeout_s=300)
        self.ready = True
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return V2_IO

    def get_output_types(self) -> list[dict[str, Any]]:
        return V2_OUT

    async def preprocess(self, payload: Any, headers: Any = None) -> Any:
        return payload, parse_instances(payload)

    async def predict(self, parsed: Any, headers: Any = None, response_headers: Any = None) -> Any:
        payload, reqs = parsed
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        calls = [self.handle.recommend.remote(r) for r in reqs]
        try:
            out: list[RecommendResponse] = await asyncio.wait_for(
                asyncio.gather(*calls), self.timeout_s
            )
        except Exception as exc:
            self.metrics.error(type(exc).__name__, code=503)
            raise NotReady(f"recommender unavailable: {type(exc).__name__}") from None
        for r in out:
            self.metrics.observe(r, loop.time() - t0)
        return payload, out

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


class LoopbackModelServer(kserve.ModelServer):  # type: ignore[misc]
    """KServe's server bound to one address (its uvicorn host is hard-coded to 0.0.0.0)."""

    def __init__(self, *args: Any, host: str = "127.0.0.1", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    def setup_event_loop(self) -> None:
        if self._rest_server:
            self._rest_server.config.host = self.host
        if threading.current_thread() is not threading.main_thread():
            asyncio.set_event_loop(asyncio.new_event_loop())
        super().setup_event_loop()

    def register_signal_handler(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super().register_signal_handler()


def install_routes(metrics: ServingMetrics) -> None:
    """Errors that know their status answer as JSON; bodies over the limit are 413."""
    from kserve.model_server import app

    async def vidrec_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VidrecError)
        metrics.error(type(exc).__name__, code=exc.http_status)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    app.add_exception_handler(VidrecError, vidrec_error)
    app.max_body_size = MAX_BODY_BYTES


def serve_forever(handle: Any, port: int, name: str = "vidrec", host: str = "127.0.0.1") -> None:
    metrics = ServingMetrics(REGISTRY)
    install_routes(metrics)
    model = VidrecModel(name, handle, metrics)
    model.load()
    server = LoopbackModelServer(
        http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False, host=host
    )
    server.start([model])
