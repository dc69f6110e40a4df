"""Which model versions `vidrec serve` keeps loaded, decided from the route table and a clock.

The table names at most two (champion, challenger). A version it stops naming (a former
champion after a promotion, a rolled-back challenger) stays loaded for `retire_after_s`, so a
rollback or a new canary of it finds it warm, and is then unloaded: each version's replicas
hold a share of the Ray node's CPUs and over a GB of memory, and the versions promotions
leave behind would at last leave no room for the next challenger (its replicas pending
forever) or exhaust the pod's memory. A named version that does not fit takes the room of
unnamed ones sooner, but never before their calls have drained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Idle = Mapping[str, float | None]  # loaded version -> since when unnamed (None: named)


@dataclass(frozen=True)
class Plan:
    retire: tuple[str, ...] = ()  # unload these first (their room is what `load` uses)
    load: tuple[str, ...] = ()
    no_room: tuple[str, ...] = ()  # named, not loaded, and no room for them yet


def idle_since(loaded: Idle, named: Sequence[str], now: float) -> dict[str, float | None]:
    """Each loaded version's idle mark, updated by the table's `named` versions at `now`."""
    return {
        v: None if v in named else (now if since is None else since) for v, since in loaded.items()
    }


def plan(
    named: Sequence[str],
    loaded: Idle,
    now: float,
    retire_after_s: float,
    drain_s: float,
    room: int,
) -> Plan:
    """`loaded` as marked by `idle_since`; `room`: versions the node holds at once; `drain_s`:
    how long a call to a version can outlive the table that routed it."""
    idle = {v: now - since for v, since in loaded.items() if since is not None}
    retire = [v for v, t in idle.items() if t >= max(retire_after_s, drain_s)]
    wanted = [v for v in dict.fromkeys(named) if v not in loaded]
    free = room - len(loaded) + len(retire)
    # drained but not yet due: the longest idle give their room first
    spare = sorted((v for v, t in idle.items() if drain_s <= t and v not in retire),
                   key=lambda v: -idle[v])  # fmt: skip
    while len(wanted) > free and spare:
        retire.append(spare.pop(0))
        free += 1
    fits = max(free, 0)
    return Plan(tuple(retire), tuple(wanted[:fits]), tuple(wanted[fits:]))
