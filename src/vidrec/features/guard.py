"""The leakage guard: no feature value may come from a fact not yet available.

The point-in-time join already asks for facts strictly before the snapshot,
but a definition can still leak, most often by joining on an event time (a
watch's start) instead of the time the fact became known (its label time).
So the builder carries, per feature group, the latest availability time of the
facts it used, and this check fails the build, naming the features, when any
is not strictly before the row's prediction time. It is conservative: a group
is judged by every fact up to its snapshot, not only those in the window.
"""

from __future__ import annotations

import pandas as pd

from vidrec.errors import LeakageError
from vidrec.features.pit import Group


def check(frame: pd.DataFrame, groups: list[Group], time_col: str = "ts") -> None:
    for g in groups:
        src = frame[g.src]
        bad = src.notna() & (src >= frame[time_col])
        n = int(bad.sum())
        if n:
            names = [f.name for f in g.features]
            row = frame.loc[bad.idxmax()]
            raise LeakageError(
                f"feature leakage in {', '.join(names)}: {n} row(s) use a fact available at or "
                f"after the prediction time (e.g. prediction at {int(row[time_col])}, fact "
                f"available at {int(row[g.src])}); the definition joins on "
                f"{g.features[0].join_time!r} but facts of {g.features[0].source.name!r} are "
                f"available at {g.features[0].source.available_at!r}",
                features=names,
                rows=n,
            )
