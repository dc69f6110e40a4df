"""A seeded, vectorised simulator of a video platform, with known ground truth.

It produces the logs a real platform would have (users, videos, impressions,
watches) and, apart from them, the oracle that says how relevant every video
truly is to every user at any time. Models must never read the oracle; only
offline evaluation does.

What it models, because each is a failure mode the rest of vidrec must handle:
- cold start: users and videos keep arriving;
- a feedback loop: the logging policy shows what was popular yesterday;
- position bias: position k is examined with probability (1+k)^-decay;
- delayed labels: a watch is known only when it ends (plus ingestion delay);
- drift scenarios: interest-shift (concept: half of the users turn, at onset, to interests
  unrelated to their old ones), new-market and catalog-surge (data).

Streaming: one simulated day at a time, in chunks of requests, each written as
Parquet row groups, so memory is bounded by a day's requests, not the run.
The same seed gives the same bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from vidrec.config import DAY, T0, Scenario, SimConfig
from vidrec.data.oracle import Oracle, click_probability, watch_seconds
from vidrec.data.schema import TABLES
from vidrec.errors import InvalidInput

Array = npt.NDArray[Any]

COUNTRIES = ("US", "GB", "DE", "IN", "JP")
COUNTRY_WEIGHTS = (0.35, 0.10, 0.15, 0.30, 0.10)
NEW_MARKET = "BR"
NEW_MARKET_AGES = (0.3, 0.4, 0.2, 0.06, 0.03, 0.01)  # younger than the others
NEW_MARKET_DEVICES = (0.05, 0.85, 0.08, 0.02)  # mostly android
LANGUAGE_OF = {"US": "en", "GB": "en", "DE": "de", "IN": "hi", "JP": "ja", "BR": "pt"}
LANGUAGES = ("en", "de", "hi", "ja", "pt")
DEVICES = ("ios", "android", "web", "tv")
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
CATEGORIES = (
    "music",
    "gaming",
    "news",
    "sports",
    "comedy",
    "education",
    "cooking",
    "travel",
    "tech",
    "film",
    "kids",
    "fitness",
)
DIURNAL = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        0.8,
        1.2,
        1.3,
        1.2,
        1.1,
        1.2,
        1.4,
        1.3,
        1.2,
        1.2,
        1.4,
        1.7,
        2.1,
        2.5,
        2.6,
        2.3,
        1.8,
        1.3,
    ]
)
PARQUET_OPTS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}

Progress = Callable[[int], None]


@dataclass
class World:
    """Entities and latent truth; arrays are indexed by id (ids are 0..n-1)."""

    users: dict[str, Array]
    videos: dict[str, Array]
    oracle: Oracle


@dataclass
class Counters:
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    watch_seconds: float = 0.0
    slate_duplicates_dropped: int = 0
    per_day_impressions: list[int] = field(default_factory=list)


def _unit(x: Array) -> Array:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _unrelated(interest: Array, order: Array) -> Array:
    """Interests unrelated to `interest` (unit rows): its topics reordered by `order`, then
    made orthogonal to it. Reordering alone keeps a cosine with the old interests that
    depends on the draw (mean 0.0 to 0.23 over seeds 0-5), so the shift's severity was luck."""
    moved = interest[:, order]
    return _unit(moved - (moved * interest).sum(axis=1, keepdims=True) * interest)


def _arrival_times(
    rng: np.random.Generator,
    n: int,
    initial_share: float,
    days: int,
    windows: Sequence[tuple[float, float, float]],
) -> Array:
    """Signup/upload times: a share before T0, the rest over the run.

    `windows` = (start_day, end_day, share of arrivals) concentrate arrivals
    (new-market, catalog-surge); the remainder is uniform over all days.
    """
    n_init = round(n * initial_share)
    ts = np.empty(n, dtype=np.int64)
    ts[:n_init] = T0 - rng.integers(1, 365 * DAY, n_init)
    rest = n - n_init
    start = n_init
    for lo, hi, share in windows:
        k = round(rest * share)
        ts[start : start + k] = T0 + rng.integers(int(lo * DAY), int(hi * DAY), k)
        start += k
    ts[start:] = T0 + rng.integers(0, days * DAY, n - start)
    return ts


def make_world(cfg: SimConfig, scenario: Scenario, rng: np.random.Generator) -> World:
    k, onset = cfg.topics, cfg.onset_day
    country_centroid = rng.normal(size=(len(COUNTRIES) + 1, k))
    category_centroid = rng.normal(size=(len(CATEGORIES), k)) * 1.5

    # users
    nu = cfg.users
    nm_window = [(onset, cfg.days, 0.6)] if scenario == "new-market" else []
    signup = _arrival_times(rng, nu, cfg.initial_user_share, cfg.days, nm_window)
    country = rng.choice(len(COUNTRIES), nu, p=COUNTRY_WEIGHTS)
    if scenario == "new-market":
        # 90% of the concentrated post-onset arrivals come from the new market
        n_init = round(nu * cfg.initial_user_share)
        n_nm = round((nu - n_init) * 0.6)
        is_new = rng.random(n_nm) < 0.9
        country[n_init : n_init + n_nm][is_new] = len(COUNTRIES)
    countries = np.array([*COUNTRIES, NEW_MARKET])
    in_nm = country == len(COUNTRIES)
    age = rng.choice(len(AGE_BUCKETS), nu, p=(0.08, 0.22, 0.27, 0.2, 0.13, 0.1))
    age[in_nm] = rng.choice(len(AGE_BUCKETS), int(in_nm.sum()), p=NEW_MARKET_AGES)
    device = rng.choice(len(DEVICES), nu, p=(0.35, 0.35, 0.2, 0.1))
    device[in_nm] = rng.choice(len(DEVICES), int(in_nm.sum()), p=NEW_MARKET_DEVICES)
    interest = _unit(0.8 * country_centroid[country] + rng.normal(size=(nu, k)))
    activity = rng.gamma(2.0, 0.5, nu)
    user_lang = np.array([LANGUAGES.index(LANGUAGE_OF[c]) for c in countries])[country]

    # creators and videos
    nv = cfg.videos
    n_creators = max(1, int(nv * cfg.creators_per_video))
    creator_country = rng.choice(
        len(COUNTRIES) + 1, n_creators, p=(*(w * 0.95 for w in COUNTRY_WEIGHTS), 0.05)
    )
    creator_quality = rng.beta(2, 2, n_creators)
    surge = [(onset, min(cfg.days, onset + 3), 0.8)] if scenario == "catalog-surge" else []
    upload = _arrival_times(rng, nv, cfg.initial_video_share, cfg.days, surge)
    creator = rng.integers(0, n_creators, nv)
    category = rng.integers(0, len(CATEGORIES), nv)
    topic = _unit(category_centroid[category] + rng.normal(size=(nv, k)))
    quality = np.clip(0.6 * creator_quality[creator] + 0.4 * rng.beta(2, 2, nv), 0, 1)
    video_lang = np.array([LANGUAGES.index(LANGUAGE_OF[c]) for c in countries])[
        creator_country[creator]
    ]
    duration = np.exp(rng.normal(np.log(240), 0.8, nv)).clip(15, 7200)

    shifted = np.zeros(nu, dtype=bool)
    interest_after = interest
    if scenario == "interest-shift":
        shifted = rng.random(nu) < 0.5
        interest_after = interest.copy()
        interest_after[shifted] = _unrelated(interest[shifted], rng.permutation(k))
    oracle = Oracle(
        interest=interest,
        interest_after=interest_after,
        shifted=shifted,
        shift_ts=T0 + onset * DAY if scenario == "interest-shift" else None,
        topic=topic,
        quality=quality.astype(np.float32),
        user_lang=user_lang.astype(np.int8),
        video_lang=video_lang.astype(np.int8),
        duration=duration.astype(np.float32),
        examination_decay=cfg.examination_decay,
    )
    users = {
        "user_id": np.arange(nu, dtype=np.int64),
        "country": countries[country],
        "age_bucket": np.array(AGE_BUCKETS)[age],
        "device": np.array(DEVICES)[device],
        "signup_ts": signup,
        "_activity": activity,
        "_device": device,
    }
    videos = {
        "video_id": np.arange(nv, dtype=np.int64),
        "category": np.array(CATEGORIES)[category],
        "creator_id": creator.astype(np.int64),
        "language": np.array(LANGUAGES)[video_lang],
        "duration_s": duration.astype(np.float32),
        "upload_ts": upload,
    }
    return World(users, videos, oracle)


def _day_requests(
    cfg: SimConfig, world: World, day: int, rng: np.random.Generator
) -> dict[str, Array]:
    """All slate requests of one day, sorted by time."""
    u = world.users
    day_start, day_end = T0 + day * DAY, T0 + (day + 1) * DAY
    alive = np.flatnonzero(u["signup_ts"] < day_end)
    # a user signs up to watch: the day of sign-up is active, its first session at sign-up
    joined = u["signup_ts"][alive] >= day_start
    p_active = np.clip(cfg.daily_active_rate * u["_activity"][alive], 0, 1)
    on = joined | (rng.random(alive.size) < p_active)
    active = alive[on]
    n_sess = 1 + rng.poisson(cfg.sessions_per_active_user - 1, active.size)
    sess_user = np.repeat(active, n_sess)
    hour = rng.choice(24, sess_user.size, p=DIURNAL / DIURNAL.sum())
    start = day_start + hour * 3600 + rng.integers(0, 3600, sess_user.size)
    signup = u["signup_ts"][sess_user]
    joined_first = (np.cumsum(n_sess) - n_sess)[joined[on]]
    start[joined_first] = signup[joined_first] + 1
    start = np.maximum(start, signup + 1)
    n_req = 1 + rng.poisson(cfg.requests_per_session - 1, sess_user.size)
    req_user = np.repeat(sess_user, n_req)
    first = np.repeat(np.cumsum(n_req) - n_req, n_req)
    pos_in_session = np.arange(req_user.size) - first
    gaps = rng.exponential(90.0, req_user.size).astype(np.int64) + 5
    gaps[first == np.arange(req_user.size)] = 0
    ts = np.repeat(start, n_req) + _segment_cumsum(gaps, n_req)
    own = u["_device"][req_user]
    other = rng.integers(0, len(DEVICES), req_user.size)
    device = np.where(rng.random(req_user.size) < 0.85, own, other)
    order = np.argsort(ts, kind="stable")
    return {
        "user_id": req_user[order],
        "ts": ts[order],
        "session_position": pos_in_session[order].astype(np.int16),
        "device": device[order],
    }


def _segment_cumsum(x: Array, lengths: Array) -> Array:
    c = np.cumsum(x)
    offsets = np.repeat(c[np.cumsum(lengths) - lengths] - x[np.cumsum(lengths) - lengths], lengths)
    return c - offsets


@dataclass
class LoggingPolicy:
    """Popularity (trailing 7-day watches) mixed with uniform exploration of fresh videos.

    Each slot is first assigned a component: explore with probability e, else
    exploit. Exploit slots draw by popularity and are then *ranked*, most popular
    first, among the exploit positions of the slate; explore slots draw a fresh
    video uniformly and keep their random position. So popular videos sit at
    the top, where users look most: the position bias a ranker must correct.
    The logged propensity is the per-draw probability (1-e)*p_pop + e*p_fresh;
    the rare duplicate is redrawn from its slot's component, which the
    propensity does not model.
    """

    eligible: Array
    p_pop: Array  # per-draw probability over `eligible`, exploit component
    p_explore: Array  # likewise, explore component
    exploration: float

    @property
    def p(self) -> Array:
        return (1 - self.exploration) * self.p_pop + self.exploration * self.p_explore

    @classmethod
    def for_day(
        cls, cfg: SimConfig, world: World, day: int, recent_watches: Array, prior: Array
    ) -> LoggingPolicy:
        day_start = T0 + day * DAY
        eligible = np.flatnonzero(world.videos["upload_ts"] < day_start)
        pop = (recent_watches[eligible] + prior[eligible]) ** 0.8
        fresh = world.videos["upload_ts"][eligible] >= day_start - cfg.fresh_days * DAY
        pool = (fresh if fresh.any() else np.ones_like(fresh)).astype(np.float64)
        return cls(eligible, pop / pop.sum(), pool / pool.sum(), cfg.exploration)

    def draw(self, n: int, slate: int, rng: np.random.Generator) -> Array:
        explore = rng.random((n, slate)) < self.exploration
        cdfs = (np.cumsum(self.p_pop), np.cumsum(self.p_explore))

        def sample(mask: Array) -> Array:
            out = np.empty(mask.shape, dtype=np.int64)
            for comp, cdf in ((False, cdfs[0]), (True, cdfs[1])):
                sel = mask == comp
                u = rng.random(int(sel.sum())) * cdf[-1]
                out[sel] = np.searchsorted(cdf, u).clip(0, cdf.size - 1)
            return out

        idx = sample(explore)
        for _ in range(5):
            dup = _duplicate_mask(idx)
            if not dup.any():
                break
            idx[dup] = sample(explore[dup])
        return _rank_exploit_slots(idx, explore, self.p_pop)


def _rank_exploit_slots(idx: Array, explore: Array, p_pop: Array) -> Array:
    """Sort each slate's exploit picks by popularity into its exploit positions.

    Both argsorts are stable: `ranked` lists exploit picks (most popular first)
    then explore picks in slot order; `slots` lists exploit positions then
    explore positions, each ascending. Scattering one onto the other ranks the
    exploit picks and leaves every explore pick where it was drawn.
    """
    key = np.where(explore, np.inf, -p_pop[idx])
    ranked = np.take_along_axis(idx, np.argsort(key, axis=1, kind="stable"), axis=1)
    slots = np.argsort(explore, axis=1, kind="stable")
    out = np.empty_like(idx)
    np.put_along_axis(out, slots, ranked, axis=1)
    return out


def _duplicate_mask(idx: Array) -> Array:
    """True where a slot repeats an earlier slot of the same slate."""
    order = np.argsort(idx, axis=1, kind="stable")
    s = np.take_along_axis(idx, order, axis=1)
    dup_sorted = np.zeros_like(s, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def _simulate_chunk(
    cfg: SimConfig,
    world: World,
    policy: LoggingPolicy,
    req: dict[str, Array],
    first_request_id: int,
    rng: np.random.Generator,
    counters: Counters,
) -> tuple[pa.Table, pa.Table, Array]:
    n, k = req["user_id"].size, cfg.slate_size
    slot_idx = policy.draw(n, k, rng)
    keep = ~_duplicate_mask(slot_idx)
    counters.slate_duplicates_dropped += int((~keep).sum())
    video = policy.eligible[slot_idx]
    user = np.repeat(req["user_id"], k).reshape(n, k)
    ts = np.repeat(req["ts"], k).reshape(n, k)
    position = np.tile(np.arange(k, dtype=np.int16), (n, 1))
    p_click = click_probability(world.oracle, user, video, ts)
    examined = rng.random((n, k)) < world.oracle.examination(position)
    clicked = examined & (rng.random((n, k)) < p_click) & keep
    request_id = np.repeat(np.arange(first_request_id, first_request_id + n), k).reshape(n, k)

    imp = pa.table(
        {
            "request_id": request_id[keep],
            "ts": ts[keep],
            "user_id": user[keep],
            "video_id": video[keep],
            "position": position[keep],
            "propensity": policy.p[slot_idx][keep].astype(np.float64),
            "device": np.array(DEVICES)[np.repeat(req["device"], k).reshape(n, k)][keep],
            "session_position": np.repeat(req["session_position"], k).reshape(n, k)[keep],
        }
    )
    cu, cv, cts = user[clicked], video[clicked], ts[clicked]
    watch_s = watch_seconds(world.oracle, cu, cv, cts, rng)
    start = cts + 1 + rng.exponential(8.0, cts.size).astype(np.int64)
    label = (
        start
        + np.ceil(watch_s).astype(np.int64)
        + rng.exponential(cfg.label_delay_mean_s, cts.size).astype(np.int64)
    )
    wat = pa.table(
        {
            "request_id": request_id[clicked],
            "user_id": cu,
            "video_id": cv,
            "position": position[clicked],
            "start_ts": start,
            "watch_seconds": watch_s.astype(np.float32),
            "label_ts": label,
        }
    )
    counters.requests += n
    counters.impressions += imp.num_rows
    counters.clicks += wat.num_rows
    counters.watch_seconds += float(watch_s.sum())
    return imp, wat, cv


def simulate(
    cfg: SimConfig, scenario: Scenario, seed: int, out: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Write users/videos/impressions/watches Parquet to `out`, the oracle to `out/oracle`."""
    t_start = time.perf_counter()
    for table in TABLES:  # beside the file this writes, readers refuse the table
        if (out / table).is_dir():
            raise InvalidInput(
                f"{out / table}: a directory of {table} parts is there (a log ingested into "
                f"this data?); simulate writes {table}.parquet: choose another --out, or "
                "remove it",
                file=str(out / table),
            )
    rng = np.random.default_rng(seed)
    world = make_world(cfg, scenario, rng)
    out.mkdir(parents=True, exist_ok=True)
    _write_entities(world, out)
    world.oracle.save(
        out / "oracle",
        {
            "seed": seed,
            "scenario": scenario,
            "onset_ts": T0 + cfg.onset_day * DAY,
            "t0": T0,
            "days": cfg.days,
        },
    )
    counters = Counters()
    recent = np.zeros((7, cfg.videos), dtype=np.float64)
    prior = rng.poisson(1 + 20 * world.oracle.quality).astype(np.float64)
    imp_w = pq.ParquetWriter(out / "impressions.parquet", _IMP_SCHEMA, **PARQUET_OPTS)
    wat_w = pq.ParquetWriter(out / "watches.parquet", _WAT_SCHEMA, **PARQUET_OPTS)
    try:
        for day in range(cfg.days):
            policy = LoggingPolicy.for_day(cfg, world, day, recent.sum(axis=0), prior)
            req = _day_requests(cfg, world, day, rng)
            today = np.zeros(cfg.videos)
            before = counters.impressions
            for lo in range(0, req["user_id"].size, cfg.chunk_requests):
                chunk = {c: a[lo : lo + cfg.chunk_requests] for c, a in req.items()}
                imp, wat, watched = _simulate_chunk(
                    cfg, world, policy, chunk, counters.requests, rng, counters
                )
                imp_w.write_table(imp, row_group_size=1 << 20)
                wat_w.write_table(wat.sort_by("start_ts"), row_group_size=1 << 20)
                today += np.bincount(watched, minlength=cfg.videos)
            recent[day % 7] = today
            counters.per_day_impressions.append(counters.impressions - before)
            if progress:
                progress(1)
    finally:
        imp_w.close()
        wat_w.close()
    return _summary(cfg, scenario, seed, out, counters, time.perf_counter() - t_start)


_IMP_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("ts", pa.int64()),
        ("user_id", pa.int64()),
        ("video_id", pa.int64()),
        ("position", pa.int16()),
        ("propensity", pa.float64()),
        ("device", pa.string()),
        ("session_position", pa.int16()),
    ]
)
_WAT_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("user_id", pa.int64()),
        ("video_id", pa.int64()),
        ("position", pa.int16()),
        ("start_ts", pa.int64()),
        ("watch_seconds", pa.float32()),
        ("label_ts", pa.int64()),
    ]
)


def _write_entities(world: World, out: Path) -> None:
    users = {c: a for c, a in world.users.items() if not c.startswith("_")}
    pq.write_table(pa.table(users), out / "users.parquet", **PARQUET_OPTS)
    pq.write_table(pa.table(world.videos), out / "videos.parquet", **PARQUET_OPTS)


def _summary(
    cfg: SimConfig, scenario: str, seed: int, out: Path, c: Counters, seconds: float
) -> dict[str, Any]:
    summary = {
        "out": str(out),
        "seed": seed,
        "scenario": scenario,
        "days": cfg.days,
        "onset_day": cfg.onset_day if scenario != "none" else None,
        "counts": {
            "users": cfg.users,
            "videos": cfg.videos,
            "requests": c.requests,
            "impressions": c.impressions,
            "watches": c.clicks,
        },
        "ctr": round(c.clicks / max(c.impressions, 1), 5),
        "mean_watch_seconds": round(c.watch_seconds / max(c.clicks, 1), 2),
        "slate_duplicates_dropped": c.slate_duplicates_dropped,
        "seconds": round(seconds, 3),
    }
    # the manifest is part of the output, so it holds nothing run-specific (path, time)
    manifest = {k: v for k, v in summary.items() if k not in ("out", "seconds")}
    (out / "manifest.json").write_text(
        json.dumps({**manifest, "config": cfg.model_dump()}, indent=2)
    )
    return summary
