"""Train the two-tower retrieval model on clicks with in-batch softmax and log-Q correction.

Each click is a (user at request time, clicked video) pair; the other videos
in the batch are its negatives. Popular videos appear in many batches, so
plain in-batch softmax learns to push them down; subtracting log q(video)
(its share of clicks, the in-batch sampling probability) from each logit
removes that sampling bias (Yi et al., RecSys 2019). Videos with fewer than
`min_clicks` clicks get no id vector (content only), and known ids are dropped
at random in training, so the content path alone is trained to be good: what
a brand-new video relies on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from vidrec.models.two_tower import Encoder, TowerConfig, Towers, TwoTower


@dataclass(frozen=True)
class RetrievalConfig:
    epochs: int = 3
    batch: int = 1024
    lr: float = 2e-3
    temperature: float = 0.05
    min_clicks: int = 5  # fewer clicks than this: content-only embedding
    id_dropout: float = 0.2
    log_q: bool = True  # False only to measure what the correction buys
    seed: int = 0


def fit_towers(
    clicks: pd.DataFrame,
    catalog: pd.DataFrame,
    cfg: RetrievalConfig | None = None,
    tower: TowerConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Towers, dict[str, float]]:
    """`clicks`: training-set rows with label_click == 1 (user features + video attributes);
    `catalog`: the videos known at the end of training (`videos_as_features`)."""
    t0 = time.perf_counter()
    cfg, tower = cfg or RetrievalConfig(), tower or TowerConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clicks = clicks.sort_values(["ts", "request_id", "video_id"], kind="stable")
    ids = clicks.video_id.to_numpy(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    encoder = Encoder(tower, np.sort(uniq[counts >= cfg.min_clicks]), catalog)
    log_q = dict(zip(uniq.tolist(), np.log(counts / counts.sum()).tolist(), strict=True))
    users, items = encoder.users(clicks), encoder.items(clicks)
    lq = torch.tensor([log_q[i] for i in ids.tolist()], dtype=torch.float32)
    item_ids = torch.from_numpy(ids)
    net = TwoTower(tower)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n, losses = len(clicks), []
    for epoch in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n - cfg.batch + 1, cfg.batch):
            b = order[start : start + cfg.batch]
            u = net.users({k: v[b] for k, v in users.items()}, encoder.catalog_inputs)
            batch_items = {k: v[b] for k, v in items.items()}
            keep = torch.rand(len(b)) >= cfg.id_dropout
            batch_items["known"] = batch_items["known"] * keep
            v = net.items(batch_items)
            logits = u @ v.T / cfg.temperature - lq[b][None, :] * cfg.log_q
            # the same video twice in a batch is not a negative of itself
            same = item_ids[b][:, None] == item_ids[b][None, :]
            same &= ~torch.eye(len(b), dtype=torch.bool)
            loss = F.cross_entropy(logits.masked_fill(same, -1e9), torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            losses.append(float(loss.detach()))
        if progress:
            progress(epoch + 1, float(np.mean(losses[-50:])))
    stats = {
        "clicks": float(n),
        "known_videos": float(len(encoder.known)),
        "videos_clicked": float(len(uniq)),
        "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else float("nan"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return Towers(net, encoder), stats
