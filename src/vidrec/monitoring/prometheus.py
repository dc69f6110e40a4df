"""Ask Prometheus for numbers: the `MetricsProvider` interface and its HTTP implementation.

The monitor and the rollout read measurements through `MetricsProvider` only, so unit
tests can give them an in-memory fake (kept in the tests) and another backend
(Thanos, Mimir: the same query API) needs no change in the callers.

Errors say what to do next:
- `NotReady` (503): Prometheus is unreachable, timed out or failed inside. Transient:
  callers treat the measurement as *inconclusive* and try again later, never as a pass.
- `InvalidInput` (400): Prometheus rejected the query (bad PromQL, a range vector where an
  instant one is needed). Retrying will not help; the query is a bug.
Both name the URL and the query. An empty result is not an error: it is no data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from vidrec.errors import InvalidInput, NotReady, VidrecError

# errorType values of the query API that mean "the query is wrong", not "try again"
_QUERY_FAULTS = {"bad_data", "execution"}


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One element of a range vector: (epoch seconds, value) points, NaN kept."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class MetricsProvider(Protocol):
    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate an instant query now, or at epoch seconds `at`."""
        ...

    def is_online(self) -> bool:
        """True when the backend answers queries."""
        ...


class PrometheusProvider:
    """`MetricsProvider` over the Prometheus HTTP API (`/api/v1/query`)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        data = self._post(params)
        return _samples(data, self._where(promql))

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[Series]:
        """Evaluate over [start, end] every step (what a dashboard panel draws)."""
        params = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step_s)}
        data = self._post(params, "query_range")
        if data["resultType"] != "matrix":
            raise InvalidInput(f"{self._where(promql)}: returns a {data['resultType']}")
        return [Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
                for r in data["result"]]  # fmt: skip

    def is_online(self) -> bool:
        try:
            return [s.value for s in self.query("vector(1)")] == [1.0]
        except VidrecError:
            return False

    def _post(self, params: dict[str, str], api: str = "query") -> dict[str, Any]:
        # POST (form-encoded) so long generated queries never hit URL length limits.
        where = self._where(params["query"])
        try:
            resp = httpx.post(f"{self.url}/api/v1/{api}", data=params, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise NotReady(
                f"{where}: Prometheus is unreachable: {exc}", url=self.url, query=params["query"]
            ) from exc
        return _body(resp, where, self.url, params["query"])

    def _where(self, promql: str) -> str:
        return f"Prometheus at {self.url}, query {promql!r}"


def _body(resp: httpx.Response, where: str, url: str, promql: str) -> dict[str, Any]:
    """The `data` of a successful answer; otherwise the right error."""
    details = {"url": url, "query": promql, "http_status": resp.status_code}
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        # not the query API talking (a proxy's error page, a wrong URL)
        raise NotReady(f"{where}: HTTP {resp.status_code}, not a Prometheus answer", **details)
    if body["status"] != "success":
        kind, message = body.get("errorType", "unknown"), body.get("error", "")
        error = InvalidInput if kind in _QUERY_FAULTS else NotReady
        raise error(f"{where}: {kind}: {message}", error_type=kind, **details)
    return dict(body["data"])


def _samples(data: dict[str, Any], where: str) -> list[Sample]:
    kind, result = data["resultType"], data["result"]
    if kind == "vector":
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in result]
    if kind == "scalar":
        return [Sample({}, float(result[1]))]
    raise InvalidInput(f"{where}: returns a {kind}, not an instant vector or scalar")
