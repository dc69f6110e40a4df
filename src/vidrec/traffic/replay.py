"""Drive an endpoint with simulated users at a fixed rate and send their outcomes back.

Open loop (`bench.load.open_loop`): request i leaves at start + i/rate whatever
happened to earlier ones (a slow server meets a growing queue, as with real users). Each answer gets
the user's simulated outcomes posted to `/v1/feedback`. The summary reports,
per variant, what the endpoint's online metrics should show (CTR, watch time
per impression) and the slates' true expected engagement from the oracle.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from vidrec.bench.load import LoadResult, Pending, open_loop
from vidrec.traffic.users import SimulatedUsers

FEEDBACK_DELAY_S = 60  # simulated seconds between a slate and its outcomes


@dataclass
class VariantStats:
    requests: int = 0
    degraded: int = 0
    impressions: int = 0
    clicks: int = 0
    watch_seconds: float = 0.0
    engagement: float = 0.0  # sum of the slates' true expected engagement

    def summary(self) -> dict[str, Any]:
        per_imp = max(self.impressions, 1)
        return {
            "requests": self.requests,
            "degraded": self.degraded,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "ctr": round(self.clicks / per_imp, 5),
            "watch_seconds_per_impression": round(self.watch_seconds / per_imp, 4),
            "true_engagement_per_request": round(self.engagement / max(self.requests, 1), 5),
        }


@dataclass(frozen=True)
class Drift:
    """Inject the new-market scenario: from request `after` on, a `share` of requests
    comes from users of a market the model never saw (`SimulatedUsers.newcomer`)."""

    share: float
    after: int = 0


@dataclass
class Replay:
    url: str
    users: SimulatedUsers
    k: int = 10
    seed: int = 0
    max_in_flight: int = 256
    drift: Drift | None = None

    def __post_init__(self) -> None:
        self.variants: dict[str, VariantStats] = {}
        self.feedback: Counter[str] = Counter()
        self.newcomers = 0  # requests from injected new-market users
        self.seen: dict[str, set[Any]] = {}  # model version -> users it answered

    async def run(
        self, rate: float, duration_s: float, tick: Callable[[int], None] = lambda _n: None
    ) -> dict[str, Any]:
        reactions = Pending()
        # feedback has its own client: it outlives the load driver's, and stays out of latency
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as feedback:

            async def send(client: aiohttp.ClientSession, i: int) -> int:
                rng = np.random.default_rng([self.seed, i])
                ts = self.users.end_ts + i  # replayed time: one simulated second per request
                body = self._body(rng, i, ts)
                async with client.post(f"{self.url}/v1/models/vidrec:predict",
                                       json={"instances": [body]}) as r:  # fmt: skip
                    answer = await r.json() if r.status == 200 else None
                tick(1)
                if answer is not None:
                    slate = answer["predictions"][0]
                    reactions.start(self._react(feedback, body, slate, ts, rng))
                return r.status

            result = await open_loop(
                send, rate, duration_s, max_in_flight=self.max_in_flight, timeout_s=30
            )
            await reactions.wait()
        return self._summary(result)

    def _body(self, rng: np.random.Generator, i: int, ts: int) -> dict[str, Any]:
        d = self.drift
        if d is not None and i >= d.after and rng.random() < d.share:
            self.newcomers += 1
            return self.users.newcomer(rng, ts, self.k)
        return self.users.request(rng, ts, self.k)

    async def _react(
        self,
        client: aiohttp.ClientSession,
        body: dict[str, Any],
        p: dict[str, Any],
        ts: int,
        rng: np.random.Generator,
    ) -> None:
        videos = [item["video_id"] for item in p["items"]]
        outcomes, engagement = self.users.react(body["user_id"], videos, ts, rng)
        self.seen.setdefault(p["model_version"], set()).add(body["user_id"])
        s = self.variants.setdefault(p["variant"], VariantStats())
        s.requests += 1
        s.degraded += int(p["degraded"])
        s.impressions += len(videos)
        s.clicks += sum(o.clicked for o in outcomes)
        s.watch_seconds += sum(o.watch_seconds for o in outcomes)
        s.engagement += engagement
        if not outcomes:
            return
        payload = {
            "outcomes": [
                {"request_id": p["request_id"], "video_id": o.video_id, "clicked": o.clicked,
                 "watch_seconds": o.watch_seconds, "ts": ts + FEEDBACK_DELAY_S}
                for o in outcomes
            ]
        }  # fmt: skip
        try:
            async with client.post(f"{self.url}/v1/feedback", json=payload) as f:
                answer = await f.json() if f.status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.feedback[type(exc).__name__] += len(outcomes)
            return
        if answer is None:
            self.feedback[f"status_{f.status}"] += len(outcomes)
            return
        self.feedback["accepted"] += answer["accepted"]
        for rejected in answer["rejected"]:
            self.feedback[rejected["reason"]] += 1

    def _summary(self, result: LoadResult) -> dict[str, Any]:
        load = result.summary()
        return {
            "url": self.url,
            "planned": result.scheduled,
            "ok": result.ok,
            **{k: load[k] for k in ("status", "errors", "dropped_client", "achieved_rps")},
            "latency": {k: load[k] for k in ("p50_ms", "p95_ms", "p99_ms")},
            "feedback": dict(self.feedback),
            "newcomer_requests": self.newcomers,
            **users_seen(self.seen),
            "variants": {v: s.summary() for v, s in sorted(self.variants.items())},
        }


def replay(
    url: str,
    users: SimulatedUsers,
    rate: float,
    duration_s: float,
    k: int = 10,
    seed: int = 0,
    tick: Callable[[int], None] = lambda _n: None,
    drift: Drift | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = asyncio.run(Replay(url, users, k, seed, drift=drift).run(rate, duration_s, tick))
    return {**out, "seconds": round(time.perf_counter() - t0, 2)}


def users_seen(seen: dict[str, set[Any]]) -> dict[str, Any]:
    """Distinct users in all, and per model version that answered them."""
    return {
        "users": len(set().union(*seen.values())),
        "users_by_version": {v: len(u) for v, u in sorted(seen.items())},
    }
