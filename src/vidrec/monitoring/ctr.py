"""The online CTR alert's decision, `VidrecCTRDrop`, as a pure function: the rule states it in
PromQL (`rules._ctr_drop_alert`), the drift benchmark replays it on simulated windows.

The CTR over `ctr_window_s` alarms when it is both materially lower than that of the
`ctr_baseline_window_s` before it (by more than `ctr_drop`, relative) and significantly lower:
a one-sided two-proportion z-test, with the pooled CTR's binomial variance, past `ctr_z`
standard errors. The first keeps a flood of impressions from alarming on a drop nobody cares
about; the second keeps a quiet hour's few impressions from alarming on noise. A fixed
relative threshold alone is either deaf to a real drop (the simulator's interest shift lowers
CTR by 9 to 29 %) or loud on quiet windows. The windows are long (8 h against the day before)
because a 10 % drop needs thousands of impressions on each side to stand out.
"""

from __future__ import annotations

import math

from vidrec.config import AlertConfig


def ctr_dropped(shown: tuple[float, float], baseline: tuple[float, float], a: AlertConfig) -> bool:
    """`shown` and `baseline` are (impressions, clicks) of the window and of the baseline
    window before it. Nothing shown on either side: no data, no alarm."""
    (n, c), (nb, cb) = shown, baseline
    if n <= 0 or nb <= 0:
        return False
    ctr, base = c / n, cb / nb
    pooled = (c + cb) / (n + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / nb))
    return ctr < (1 - a.ctr_drop) * base and base - ctr > a.ctr_z * se
