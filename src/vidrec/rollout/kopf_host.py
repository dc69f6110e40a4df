"""kopf hosting the ModelRollout operator: a timer per ModelRollout calls
`Operator.reconcile`; kopf lists and watches, retries a failed pass with backoff, serves
/healthz, and (with a peering name) keeps replicas from acting at once."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Any

import kopf

from vidrec.rollout.k8s_store import GROUP, PLURAL, VERSION
from vidrec.rollout.operator import Operator


def run(
    op: Operator,
    *,
    interval_s: float = 2.0,
    peering: str | None = None,
    connection: kopf.ConnectionInfo | None = None,
    liveness: str | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Block until `stop` is set (or a signal, in the main thread)."""
    registry = kopf.OperatorRegistry()
    if connection is not None:

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection

    @kopf.timer(GROUP, VERSION, PLURAL, interval=interval_s, registry=registry)
    def tick(name: str, **_: Any) -> None:
        op.reconcile(name)

    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # the operator posts its own Events, one per step
    settings.process.ultimate_exiting_timeout = None  # never SIGKILL the host process
    settings.peering.standalone = peering is None
    if peering is not None:
        settings.peering.name = peering
        # replicas of equal priority would all pause: each draws its own, the highest acts
        settings.peering.priority = random.SystemRandom().randint(1, 2**31)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=settings,
            namespaces=[op.namespace],
            liveness_endpoint=liveness,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
