"""Served requests in this process: the last `remember` (the oldest forgotten, counted)."""

from __future__ import annotations

from collections import OrderedDict

from vidrec.serving.served import ServedRequest


class MemoryServed:
    def __init__(self, remember: int) -> None:
        self.remember_n = remember
        self.forgotten = 0
        self._served: OrderedDict[str, ServedRequest] = OrderedDict()
        self._claimed: set[str] = set()  # in flight

    def claim(self, request_ids: list[str]) -> set[str]:
        taken = {rid for rid in request_ids if rid in self._claimed or rid in self._served}
        if not taken:
            self._claimed.update(request_ids)
        return taken

    def release(self, request_ids: list[str]) -> None:
        self._claimed.difference_update(request_ids)

    def remember(self, served: list[ServedRequest]) -> None:
        for s in served:
            self._served[s.request_id] = s
            self._claimed.discard(s.request_id)
        while len(self._served) > self.remember_n:
            self._served.popitem(last=False)
            self.forgotten += 1

    def find(self, request_ids: list[str]) -> list[ServedRequest | None]:
        return [self._served.get(rid) for rid in request_ids]

    def first(self, outcomes: list[tuple[str, int]]) -> list[bool]:
        out = []
        for rid, video in outcomes:
            s = self._served[rid]
            if s.answered is None:
                s.answered = set()
            out.append(video not in s.answered)
            s.answered.add(video)
        return out
