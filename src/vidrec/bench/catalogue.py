"""A copy of a model bundle whose retrieval index covers a large synthetic catalogue.

The serving benchmark runs at 100k and 1M items, but a trained bundle indexes
only the simulated catalogue (a few thousand videos). `grow_bundle` copies a
bundle and rebuilds its index over every real video (their vectors unchanged)
plus synthetic ones: new ids above every real id, each content column
(creator, category, language, duration) drawn from the real videos' values,
upload times drawn from the real ones (so the fresh share stays what it was),
embedded by the bundle's own item tower - content-only, exactly like uploads
the towers never saw - and indexed by the same IVF class, into the same files
`build_index` writes. The towers, the ranker and the fallback lists are copied
untouched.

It never modifies the source bundle, and a grown bundle is for benchmarks
only: `retrieval/index/grown.json` says so and the manifest lists that file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.errors import InvalidInput, SchemaError
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.two_tower import Towers
from vidrec.registry.bundle import Manifest, bundle_files, read_manifest, write_manifest

CHUNK = 50_000  # rows embedded at a time: ~50 MB of tower activations
INDEX = Path("retrieval") / "index"
GROWN = "grown.json"


def grow_bundle(bundle: Path, out: Path, items: int, seed: int = 0) -> dict[str, Any]:
    """Copy `bundle` to `out` with an index over `items` videos (real + synthetic)."""
    t0 = time.perf_counter()
    manifest = read_manifest(bundle)  # a bundle at all, with every file it lists
    real = _Real.read(bundle / INDEX)
    if items < len(real.ids):
        raise InvalidInput(
            f"--sizes: {items} is fewer than the bundle's {len(real.ids)} real videos",
            key="--sizes",
        )
    if out.exists():
        raise InvalidInput(f"{out}: already exists; grow into a new directory", path=str(out))
    towers = Towers.load(bundle / "retrieval")
    t_load = time.perf_counter()
    rng = np.random.default_rng(seed)
    first = int(max(real.ids.max(), towers.encoder.catalog.video_id.max())) + 1
    synthetic = _synthetic(towers.encoder.catalog, real.items, items - len(real.ids), first, rng)

    ids = np.concatenate([real.ids, synthetic.video_id.to_numpy(np.int64)])
    emb = _embeddings(towers, real.embeddings, synthetic)
    t_embed = time.perf_counter()

    nprobe = IvfIndex.load(bundle / INDEX).nprobe
    index = IvfIndex.train(emb, nprobe=nprobe, seed=seed)
    index.add(ids, emb)
    t_index = time.perf_counter()

    table = pd.concat([real.items, _as_items(synthetic, real.items)], ignore_index=True, copy=False)
    info = {
        "items": items,
        "real_items": len(real.ids),
        "synthetic_items": len(synthetic),
        "first_synthetic_id": first if len(synthetic) else None,
        "seed": seed,
        "nlist": index.nlist,
        "nprobe": index.nprobe,
        "embed_seconds": round(t_embed - t_load, 1),
        "index_seconds": round(t_index - t_embed, 1),
    }
    _write(bundle, out, index, ids, emb, table, {**info, "source": str(bundle)}, manifest)
    return {**info, "out": str(out), "seconds": round(time.perf_counter() - t0, 1)}


@dataclass(frozen=True)
class _Real:
    """What the bundle's index holds: ids, their vectors and their items rows, in one order."""

    ids: npt.NDArray[np.int64]
    embeddings: npt.NDArray[np.float32]
    items: pd.DataFrame  # items.parquet: video_id, creator_id, upload_ts

    @classmethod
    def read(cls, index_dir: Path) -> _Real:
        path = index_dir / "items.parquet"
        if not path.is_file():
            raise SchemaError(
                f"{path}: not found; the bundle predates items.parquet, retrain it",
                file=str(path),
            )
        real = cls(
            np.load(index_dir / "item_ids.npy"),
            np.load(index_dir / "item_embeddings.npy"),
            pd.read_parquet(path),
        )
        if not np.array_equal(real.items.video_id.to_numpy(np.int64), real.ids):
            raise SchemaError(f"{path}: rows are not the index's item_ids", file=str(path))
        return real


def _synthetic(
    catalog: pd.DataFrame, items: pd.DataFrame, n: int, first: int, rng: np.random.Generator
) -> pd.DataFrame:
    """`n` new videos in the towers' input columns, plus `upload_ts`.

    Each column is drawn on its own from the real values. Content-only vectors
    depend on (creator, category, language) and, a little, duration: whole-row
    copies would give each real video ~200 near-identical twins at 1M items;
    independent columns spread them over every combination the model knows.
    """

    def draw(values: pd.Series) -> npt.NDArray[Any]:
        return rng.choice(values.to_numpy(), n)

    return pd.DataFrame(
        {
            "video_id": np.arange(first, first + n, dtype=np.int64),
            "video_category": draw(catalog.video_category),
            "video_creator_id": draw(catalog.video_creator_id).astype(np.float64),
            "video_language": draw(catalog.video_language),
            "video_duration_s": draw(catalog.video_duration_s).astype(np.float64),
            "upload_ts": draw(items.upload_ts),
        }
    )


def _embeddings(
    towers: Towers, real: npt.NDArray[np.float32], synthetic: pd.DataFrame
) -> npt.NDArray[np.float32]:
    """The real vectors as they are, then the synthetic ones, embedded `CHUNK` rows at a time."""
    emb = np.empty((len(real) + len(synthetic), real.shape[1]), dtype=np.float32)
    emb[: len(real)] = real
    for start in range(0, len(synthetic), CHUNK):
        rows = synthetic.iloc[start : start + CHUNK]
        emb[len(real) + start : len(real) + start + len(rows)] = towers.embed_items(rows)
    return emb


def _as_items(synthetic: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """The synthetic videos as rows of items.parquet, with its column types."""
    creator = synthetic.video_creator_id
    if not creator.isna().any():  # ints stay ints; a missing creator keeps the float NaN
        creator = creator.astype(real.creator_id.dtype)
    return pd.DataFrame(
        {
            "video_id": synthetic.video_id,
            "creator_id": creator,
            "upload_ts": synthetic.upload_ts.astype(real.upload_ts.dtype),
        }
    )[list(real.columns)]


def _write(
    bundle: Path,
    out: Path,
    index: IvfIndex,
    ids: npt.NDArray[np.int64],
    emb: npt.NDArray[np.float32],
    table: pd.DataFrame,
    grown: dict[str, Any],
    manifest: Manifest,
) -> None:
    """Into a sibling directory, renamed to `out` when whole: no half-grown bundle."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(bundle, tmp)
        idx = tmp / INDEX
        index.save(idx)  # the files build_index writes, in its formats
        np.save(idx / "item_ids.npy", ids)
        np.save(idx / "item_embeddings.npy", emb)
        table.to_parquet(idx / "items.parquet", index=False)
        (idx / GROWN).write_text(json.dumps(grown, indent=1) + "\n")
        write_manifest(tmp, manifest.model_copy(update={"files": bundle_files(tmp)}))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
