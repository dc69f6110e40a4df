"""Ground truth of the simulated platform: how relevant a video truly is to a user.

Kept in its own directory (`<sim>/oracle/`) and read only by the simulator and
offline evaluation. Nothing on the feature, training or serving path may import
this module; doing so would let a model see the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Oracle:
    interest: Array  # (users, topics) before any interest shift
    interest_after: Array  # (users, topics) from shift_ts on
    shifted: Array  # (users,) bool: whose interests shift
    shift_ts: int | None
    topic: Array  # (videos, topics)
    quality: Array  # (videos,)
    user_lang: Array  # (users,)
    video_lang: Array  # (videos,)
    duration: Array  # (videos,)
    examination_decay: float

    def examination(self, position: Array) -> Array:
        """P(user looks at position k), k counted from 0: the position bias."""
        return np.asarray((1.0 + position) ** -self.examination_decay)

    def affinity(self, user: Array, video: Array, ts: Array) -> Array:
        u = self.interest[user]
        if self.shift_ts is not None:
            late = (np.asarray(ts) >= self.shift_ts) & self.shifted[user]
            u = np.where(late[..., None], self.interest_after[user], u)
        return np.asarray(np.einsum("...k,...k->...", u, self.topic[video]))

    def relevance(self, user: Array, video: Array, ts: Array) -> Array:
        """True expected engagement of an examined impression: P(click) * E[watch share]."""
        return click_probability(self, user, video, ts) * watch_fraction(self, user, video, ts)

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        np.savez(path / "oracle.npz", **arrays)
        (path / "oracle.json").write_text(
            json.dumps(
                {**meta, "shift_ts": self.shift_ts, "examination_decay": self.examination_decay},
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> Oracle:
        meta = json.loads((path / "oracle.json").read_text())
        with np.load(path / "oracle.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return cls(**arrays, shift_ts=meta["shift_ts"], examination_decay=meta["examination_decay"])


def click_probability(o: Oracle, user: Array, video: Array, ts: Array) -> Array:
    """P(click | examined): topical affinity, quality and language match."""
    same_lang = (o.user_lang[user] == o.video_lang[video]).astype(np.float32)
    x = 4.0 * o.affinity(user, video, ts) + 2.0 * (o.quality[video] - 0.5) + 0.8 * same_lang - 2.2
    return _sigmoid(x)


def watch_fraction(o: Oracle, user: Array, video: Array, ts: Array) -> Array:
    """Expected share of the video watched after a click."""
    return _sigmoid(3.0 * o.affinity(user, video, ts) + 2.5 * (o.quality[video] - 0.5) - 0.3)


def watch_seconds(
    o: Oracle, user: Array, video: Array, ts: Array, rng: np.random.Generator
) -> Array:
    """Seconds watched after clicks: the expected share with Beta noise, in 0.1 s."""
    frac = watch_fraction(o, user, video, ts)
    frac = rng.beta(np.maximum(frac * 4, 0.05), np.maximum((1 - frac) * 4, 0.05))
    return np.asarray(np.round(frac * o.duration[video], 1))
