"""The two-tower retrieval model: its network and the encoding of its inputs.

Item tower = content (category, language, creator, duration) + a hashed-id
embedding gated by `known`: an item the model never saw clicked enough has no
trustworthy id vector, so its embedding comes from content alone - that is how
a video uploaded a minute ago is retrievable. User tower = segment and context
(country, age, device, hour) + activity counts + the mean id embedding of the
last watched videos. Both end L2-normalised, so scores are cosines and the ANN
index searches by inner product.

Inputs are columns of the shared feature frame (`vidrec.features`), the same
names offline and online, so the towers cannot see a different vector in
serving than in training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vidrec.features.definitions import CODE_BUCKETS, code
from vidrec.features.spec import Columns
from vidrec.features.transform import id_lists
from vidrec.models.ids import find_sorted

Array = npt.NDArray[Any]
USER_NUMERIC: tuple[str, ...] = (
    "user_watches_7d",
    "user_watches_28d",
    "user_tenure_days",
    "user_ctr_7d",
)
USER_COLUMNS: tuple[str, ...] = (
    "user_last_watched",
    "country_code",
    "age_code",
    "device_code",
    "hour_of_day",
)
USER_COLUMNS += USER_NUMERIC
CONTEXT = ("country", "age", "device", "hour")  # the user tower's embedded inputs, in order
ITEM_COLUMNS: tuple[str, ...] = ("video_id", "video_category", "video_creator_id", "video_language")
ITEM_COLUMNS += ("video_duration_s",)


@dataclass(frozen=True)
class TowerConfig:
    dim: int = 64
    hidden: int = 128
    id_buckets: int = 1 << 16  # hashed ids: collisions are rare at 5k videos, tolerable at 100k
    creator_buckets: int = 1 << 12
    history: int = 5


def hash_bucket(ids: Array, buckets: int) -> Array:
    """Knuth multiplicative hash: neighbouring ids land far apart, same id same bucket."""
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    return ((x * np.uint64(2654435761)) % np.uint64(buckets)).astype(np.int64)


def _code_index(codes: Array) -> Array:
    c = np.asarray(codes, dtype=np.int64)
    return np.where(c < 0, CODE_BUCKETS, c)  # unknown -> its own row


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, out))


def videos_as_features(videos: pd.DataFrame) -> pd.DataFrame:
    """The videos table under the feature frame's column names."""
    return pd.DataFrame(
        {
            "video_id": videos.video_id.to_numpy(np.int64),
            "video_category": videos.category.to_numpy(),
            "video_creator_id": videos.creator_id.to_numpy(np.float64),
            "video_language": videos.language.to_numpy(),
            "video_duration_s": videos.duration_s.to_numpy(np.float64),
        }
    )


class TwoTower(nn.Module):  # type: ignore[misc]
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        d, self.cfg = cfg.dim, cfg
        self.item_id = nn.Embedding(cfg.id_buckets, d)
        nn.init.normal_(self.item_id.weight, std=0.01)
        self.category = nn.Embedding(CODE_BUCKETS + 1, d)
        self.language = nn.Embedding(CODE_BUCKETS + 1, d)
        self.creator = nn.Embedding(cfg.creator_buckets + 1, d)
        self.item_mlp = _mlp(3 * d + 1, cfg.hidden, d)
        self.country = nn.Embedding(CODE_BUCKETS + 1, 16)
        self.age = nn.Embedding(CODE_BUCKETS + 1, 8)
        self.device = nn.Embedding(CODE_BUCKETS + 1, 8)
        self.hour = nn.Embedding(24, 8)
        self.user_mlp = _mlp(d + 40 + len(USER_NUMERIC), cfg.hidden, d)

    def _item_vectors(self, x: dict[str, Tensor]) -> Tensor:
        parts = [self.category(x["category"]), self.language(x["language"])]
        parts += [self.creator(x["creator"]), x["duration"][:, None]]
        content = torch.cat(parts, dim=1)
        return self.item_mlp(content) + self.item_id(x["id"]) * x["known"][:, None]

    def items(self, x: dict[str, Tensor]) -> Tensor:
        return F.normalize(self._item_vectors(x), dim=-1)

    def users(self, x: dict[str, Tensor], catalog: dict[str, Tensor]) -> Tensor:
        """`hist` indexes rows of `catalog` (item inputs); the history is embedded by the
        item tower itself, so a user is near what they watched, cold items included."""
        rows = x["hist"].reshape(-1)
        return self.users_from(x, self.items({k: v[rows] for k, v in catalog.items()}))

    def users_from(self, x: dict[str, Tensor], history: Tensor) -> Tensor:
        """The user tower given the item vectors of `hist`, flattened (serving computes
        them once for the whole catalogue and indexes them)."""
        mask = x["hist_mask"]
        vec = history.reshape(*mask.shape, -1)
        hist = (vec * mask[..., None]).sum(1) / mask.sum(1).clamp(min=1.0)[:, None]
        parts = [hist, *(getattr(self, k)(x[k]) for k in CONTEXT), x["numeric"]]
        z = torch.cat(parts, dim=1)
        return F.normalize(self.user_mlp(z), dim=-1)


@dataclass
class Encoder:
    """Feature frame -> tower tensors; `known` is the set of ids with trusted id vectors."""

    cfg: TowerConfig
    known: Array  # sorted int64 video ids
    catalog: pd.DataFrame  # ITEM_COLUMNS, sorted by video_id: what history ids resolve to

    def __post_init__(self) -> None:
        self.catalog = self.catalog.sort_values("video_id").reset_index(drop=True)
        self._catalog_ids = self.catalog.video_id.to_numpy(np.int64)
        self.catalog_inputs = self.items(self.catalog)

    def catalog_rows(self, ids: Array) -> tuple[Array, Array]:
        """Row of each id in the catalogue and whether it is there at all."""
        return find_sorted(self._catalog_ids, ids)

    def is_known(self, ids: Array) -> Array:
        return find_sorted(self.known, ids)[1]

    def items(self, frame: pd.DataFrame, force_cold: bool = False) -> dict[str, Tensor]:
        ids = frame.video_id.to_numpy(np.int64)
        creator = frame.video_creator_id.to_numpy(np.float64)
        creator_idx = np.where(
            np.isnan(creator),
            self.cfg.creator_buckets,
            hash_bucket(np.nan_to_num(creator).astype(np.int64), self.cfg.creator_buckets),
        )
        known = np.zeros(len(ids), bool) if force_cold else self.is_known(ids)
        dur = np.log1p(np.nan_to_num(frame.video_duration_s.to_numpy(np.float64))) / 8.0
        return {
            "id": torch.from_numpy(hash_bucket(ids, self.cfg.id_buckets)),
            "known": torch.from_numpy(known.astype(np.float32)),
            "category": torch.from_numpy(_code_index(code(frame.video_category))),
            "language": torch.from_numpy(_code_index(code(frame.video_language))),
            "creator": torch.from_numpy(creator_idx.astype(np.int64)),
            "duration": torch.from_numpy(dur.astype(np.float32)),
        }

    def users(self, frame: Columns | pd.DataFrame) -> dict[str, Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.user_arrays(frame).items()}

    def user_arrays(self, frame: Columns | pd.DataFrame) -> dict[str, Array]:
        """The user tower's inputs as numpy arrays (`users` makes them tensors)."""
        lists = id_lists(frame["user_last_watched"]).to_pylist()
        hist = np.full((len(lists), self.cfg.history), -1, dtype=np.int64)
        for i, ids in enumerate(lists):
            tail = np.asarray(ids, dtype=np.int64)[-self.cfg.history :]
            hist[i, : len(tail)] = tail
        rows, found = self.catalog_rows(np.where(hist >= 0, hist, 0))
        valid = (hist >= 0) & found
        numeric = np.column_stack([np.asarray(frame[c], np.float64) for c in USER_NUMERIC])
        numeric = np.log1p(np.nan_to_num(numeric).clip(0))
        return {
            "hist": rows.astype(np.int64),
            "hist_mask": valid.astype(np.float32),
            "country": _code_index(np.asarray(frame["country_code"])),
            "age": _code_index(np.asarray(frame["age_code"])),
            "device": _code_index(np.asarray(frame["device_code"])),
            "hour": np.asarray(frame["hour_of_day"], np.int64) % 24,
            "numeric": numeric.astype(np.float32),
        }


@dataclass
class Towers:
    """A trained two-tower model with its encoder: what a bundle stores and serving loads."""

    net: TwoTower
    encoder: Encoder

    @torch.inference_mode()  # type: ignore[misc]
    def embed_users(self, frame: Columns | pd.DataFrame) -> npt.NDArray[np.float32]:
        self.net.eval()
        return self.net.users(self.encoder.users(frame), self.encoder.catalog_inputs).numpy()

    @torch.inference_mode()  # type: ignore[misc]
    def serving_user_tower(self) -> Callable[[Columns | pd.DataFrame], npt.NDArray[np.float32]]:
        """`embed_users` for a frozen model: the history items' vectors computed once for the
        whole catalogue, and `TwoTower.users_from` in numpy: at a request's one user, torch's
        per-operation dispatch was a seventh of the whole model path. The same function of
        the same weights, equal to `embed_users` up to float rounding (tested)."""
        self.net.eval()
        vectors = self.net.items(self.encoder.catalog_inputs).numpy()
        sd = self.net.state_dict()  # copied below: the user tower's alone, not the id table
        w = {k: sd[k].numpy().copy() for k in sd if k.split(".")[0] in (*CONTEXT, "user_mlp")}
        tables = [w[f"{k}.weight"] for k in CONTEXT]
        layers = [(w[f"user_mlp.{i}.weight"].T.copy(), w[f"user_mlp.{i}.bias"]) for i in (0, 2)]

        def embed(frame: Columns | pd.DataFrame) -> npt.NDArray[np.float32]:
            x = self.encoder.user_arrays(frame)
            mask = x["hist_mask"]
            vec = vectors[x["hist"].reshape(-1)].reshape(*mask.shape, -1)
            hist = (vec * mask[..., None]).sum(1) / np.maximum(mask.sum(1), 1.0)[:, None]
            looked_up = [t[x[k]] for t, k in zip(tables, CONTEXT, strict=True)]
            z = np.concatenate([hist, *looked_up, x["numeric"]], 1)
            (w1, b1), (w2, b2) = layers  # Linear, ReLU, Linear (`_mlp`)
            h = np.maximum(z @ w1 + b1, 0) @ w2 + b2
            norm = np.linalg.norm(h, axis=1, keepdims=True)
            return (h / np.maximum(norm, 1e-12)).astype(np.float32)  # F.normalize's eps

        return embed

    @torch.no_grad()  # type: ignore[misc]
    def embed_items(self, frame: pd.DataFrame, force_cold: bool = False) -> npt.NDArray[np.float32]:
        self.net.eval()
        return self.net.items(self.encoder.items(frame, force_cold)).numpy()

    def save(self, path: Path) -> list[str]:
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "towers.pt")
        np.save(path / "known_ids.npy", self.encoder.known)
        self.encoder.catalog.to_parquet(path / "catalog.parquet", index=False)
        (path / "towers.json").write_text(json.dumps(asdict(self.net.cfg)))
        return ["towers.pt", "known_ids.npy", "catalog.parquet", "towers.json"]

    @classmethod
    def load(cls, path: Path) -> Towers:
        cfg = TowerConfig(**json.loads((path / "towers.json").read_text()))
        net = TwoTower(cfg)
        net.load_state_dict(torch.load(path / "towers.pt", weights_only=True))
        catalog = pd.read_parquet(path / "catalog.parquet")
        return cls(net, Encoder(cfg, np.load(path / "known_ids.npy"), catalog))
