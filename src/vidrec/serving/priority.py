"""Shadow work only on CPU that served work leaves idle, on a machine they share.

A challenger shadowing every request doubles the model work. Where its replica
shares cores with the champion's (one node, or 2 cores as here), the kernel
would split the CPU evenly between them and the champion's tail latency would
pay for a comparison nobody sees. Linux schedules each thread on its own, so a
replica runs its shadow-only batches on a thread of its own under SCHED_IDLE:
it runs when nothing else on its CPU wants to, and a waking thread of the
normal policy takes the CPU from it at once. A nice value does not do that:
with the thread 10 nice levels down, the champion's p99 under 100 % shadow rose
as much as at the same priority (Linux 6.18's EEVDF lets the running thread
finish its slice; README, Benchmarks > Serving). Entering SCHED_IDLE needs no
privilege (leaving it would), which is why served work never runs on that thread.
The cost: on a saturated machine a starved shadow batch holds its replica's GIL,
so a challenger serving canary calls and shadowing at once would answer late; the
rollout controller never does both (shadow, then canary without it).
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def idle() -> bool:
    """Whether the calling thread runs under SCHED_IDLE (Linux: the policy is per thread)."""
    return sys.platform.startswith("linux") and os.sched_getscheduler(0) == os.SCHED_IDLE


def become_idle() -> None:
    """The calling thread under SCHED_IDLE; a platform that refuses is logged, not fatal:
    the shadow then competes with served work as before."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
    except OSError as exc:
        log.warning("could not move the shadow thread to SCHED_IDLE: %s", exc)


def background(enabled: bool) -> ThreadPoolExecutor | None:
    """One worker thread under SCHED_IDLE (None when disabled, or outside Linux, where a
    thread's scheduling policy would be the whole process's)."""
    if not enabled or not sys.platform.startswith("linux"):
        return None
    return ThreadPoolExecutor(1, "shadow", initializer=become_idle)
