"""Shadow work at a lower CPU priority than served work, on a machine they share.

A challenger shadowing every request doubles the model work. Where its replica
shares cores with the champion's (one node, or 2 cores as here), the kernel
would split the CPU evenly between them and the champion's tail latency would
pay for a comparison nobody sees. Linux gives each thread its own nice value,
so a replica runs its shadow-only batches on a thread of its own, niced once
when it starts (lowering a priority needs no privilege; raising it back would,
which is why served work never runs on that thread).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def thread_nice() -> int:
    """The calling thread's nice value (Linux: per thread; elsewhere the process's)."""
    return os.getpriority(os.PRIO_PROCESS, _me())


def lower_priority(steps: int) -> None:
    """The calling thread `steps` nice levels lower (at most 19); a platform that cannot
    is logged, not fatal: the shadow then competes with served work as before."""
    try:
        os.setpriority(os.PRIO_PROCESS, _me(), min(19, thread_nice() + steps))
    except OSError as exc:
        log.warning("could not lower the shadow thread's priority: %s", exc)


def background(steps: int) -> ThreadPoolExecutor | None:
    """One worker thread `steps` nice levels down (None for 0 steps, or outside Linux,
    where a thread's nice value would be the whole process's)."""
    if steps <= 0 or not sys.platform.startswith("linux"):
        return None
    return ThreadPoolExecutor(1, "shadow", initializer=lower_priority, initargs=(steps,))


def _me() -> int:
    return threading.get_native_id() if sys.platform.startswith("linux") else 0
