"""The simulated platform's users acting on served slates.

Requests come from users in proportion to how active they were in the log;
outcomes come from the simulator's oracle with its position bias (a video is
looked at with examination(position), clicked with P(click | examined), then
watched for a noisy share), so the online metrics an endpoint reports reflect
the true quality of the model that served. This is the client side: nothing
here is reachable from the serving path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vidrec.config import DAY
from vidrec.data.oracle import Oracle, click_probability, watch_seconds
from vidrec.data.schema import check_tables
from vidrec.data.simulate import (
    AGE_BUCKETS,
    DEVICES,
    NEW_MARKET,
    NEW_MARKET_AGES,
    NEW_MARKET_DEVICES,
)
from vidrec.errors import InvalidInput

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Outcome:
    video_id: int
    position: int
    clicked: bool
    watch_seconds: float


# the log's last day: its users are the next ones. The drift reference's users had a
# request in the last 4 h of each snapshot (reference_lookback_s); at the data's end,
# midnight, that and the last day's users have the same histories, the day being over for
# both, nearly (user_watches_1d: 4.28 and 4.38 on average; at 04:00, 3.69 and 4.26)
RECENT_S = float(DAY)


@dataclass
class SimulatedUsers:
    oracle: Oracle
    user_ids: Array
    weights: Array  # activity share per user
    profile: dict[str, Array]  # country, age_bucket, device per user (aligned with user_ids)
    end_ts: int  # the log's last impression: where replayed time starts
    positions: Array  # share of requests at each position in their session, as logged

    @classmethod
    def load(cls, sim: Path, recent_s: float = RECENT_S) -> SimulatedUsers:
        """Users in proportion to their requests in the log's last `recent_s`: the users who
        would come next (the drift reference is built from the latest requests, too)."""
        if not (sim / "oracle").is_dir():
            raise InvalidInput(f"{sim}: no oracle/ directory: traffic needs a simulated log",
                               file=str(sim))  # fmt: skip
        tables = check_tables(sim, ("users", "impressions"))
        parts = [str(p) for p in tables["impressions"].parts]  # a merged part's replaced left out
        imp = ds.dataset(parts, format="parquet").to_table(
            columns=["user_id", "ts", "session_position"]
        )
        end = pc.max(imp.column("ts")).as_py()
        recent = imp.filter(pc.greater_equal(imp.column("ts"), int(end - recent_s)))
        counts = pc.value_counts(recent.column("user_id")).flatten()
        positions = np.bincount(imp.column("session_position").to_numpy().astype(np.int64))
        users = pq.read_table(tables["users"].path).to_pandas().set_index("user_id")
        ids = np.asarray(counts[0].to_numpy(), dtype=np.int64)
        n = np.asarray(counts[1].to_numpy(), dtype=np.float64)
        prof = users.reindex(ids)
        return cls(
            oracle=Oracle.load(sim / "oracle"),
            user_ids=ids,
            weights=n / n.sum(),
            profile={c: prof[c].to_numpy() for c in ("country", "age_bucket", "device")},
            end_ts=int(end),
            positions=positions / positions.sum(),
        )

    def request(self, rng: np.random.Generator, ts: int, k: int) -> dict[str, Any]:
        i = min(int(np.searchsorted(np.cumsum(self.weights), rng.random())), len(self.weights) - 1)
        context: dict[str, Any] = {
            c: str(v[i]) for c, v in self.profile.items() if isinstance(v[i], str)
        }
        context["session_position"] = self._position(rng)
        return {"user_id": int(self.user_ids[i]), "k": k, "context": {**context, "ts": ts}}

    def newcomer(self, rng: np.random.Generator, ts: int, k: int) -> dict[str, Any]:
        """A request from a user of a market the log never saw (the simulator's new-market
        scenario: Brazil, young, mostly on Android): unknown to the model and the oracle."""
        context = {
            "country": NEW_MARKET,
            "age_bucket": str(rng.choice(AGE_BUCKETS, p=NEW_MARKET_AGES)),
            "device": str(rng.choice(DEVICES, p=NEW_MARKET_DEVICES)),
            "session_position": self._position(rng),
            "ts": ts,
        }
        user = int(self.oracle.interest.shape[0] + rng.integers(0, 1_000_000))
        return {"user_id": user, "k": k, "context": context}

    def _position(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.positions), p=self.positions))

    def knows(self, user: int) -> bool:
        return 0 <= user < self.oracle.interest.shape[0]

    def react(
        self, user: int, videos: list[int], ts: int, rng: np.random.Generator
    ) -> tuple[list[Outcome], float]:
        """What the user does with a slate (outcomes of the videos they looked at), and the
        slate's true expected engagement: sum over positions of examination * relevance."""
        known = [(p, v) for p, v in enumerate(videos) if 0 <= v < len(self.oracle.quality)]
        if not known or not self.knows(user):  # a newcomer: no oracle, no outcomes
            return [], 0.0
        pos = np.array([p for p, _ in known])
        vid = np.array([v for _, v in known])
        u, t = np.full(len(vid), user), np.full(len(vid), ts)
        seen = self.oracle.examination(pos)
        examined = rng.random(len(vid)) < seen
        clicked = examined & (rng.random(len(vid)) < click_probability(self.oracle, u, vid, t))
        watched = watch_seconds(self.oracle, u, vid, t, rng)
        outcomes = [
            Outcome(int(v), int(p), bool(c), float(w) if c else 0.0)
            for v, p, e, c, w in zip(vid, pos, examined, clicked, watched, strict=True)
            if e
        ]
        return outcomes, float((seen * self.oracle.relevance(u, vid, t)).sum())
