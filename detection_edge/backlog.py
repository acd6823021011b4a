"""The edge's bounded backlog of detection messages waiting for the broker (pure, no I/O).

Frames come in three kinds, from least to most worth keeping:
- `empty`: no detections (the camera's "all clear");
- `detections`: detections, none of an always-keep class;
- `significant`: at least one detection of an always-keep class (`EdgeSettings.keep_classes`,
  by default the fall classes of the kernel's default significance rules).

`empty` and `detections` frames share one bound (`max_queue`); when it is reached the oldest
`empty` frame goes first, then the oldest `detections` frame. `significant` frames have a bound
of their own (`max_significant`), so lesser frames never push one out; only when that bound is
full too (an outage long enough to queue `max_significant` of them) is the oldest significant
frame dropped, with reason `significant_overflow`. Messages leave in the order they came
(`seq`), and a message whose send failed goes back in its place.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["empty", "detections", "significant"]
DropReason = Literal["empty", "detections", "significant_overflow", "rejected", "unsent_at_exit"]


@dataclass(frozen=True)
class Item:
    """One message: `queued` is `time.perf_counter()` seconds when it was first offered."""

    seq: int
    camera: str
    kind: Kind
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    queued: float = 0.0


@dataclass(frozen=True)
class Dropped:
    item: Item
    reason: DropReason


class Backlog:
    def __init__(self, max_queue: int, max_significant: int) -> None:
        if max_queue < 1 or max_significant < 1:
            raise ValueError("backlog bounds must be at least 1")
        self._max = {"lesser": max_queue, "significant": max_significant}
        self._lesser: deque[Item] = deque()
        self._significant: deque[Item] = deque()

    def __len__(self) -> int:
        return len(self._lesser) + len(self._significant)

    def put(self, item: Item) -> list[Dropped]:
        """Queue a new (newest) message; returns what was dropped to make room."""
        return self._insert(item, at_end=True)

    def put_back(self, item: Item) -> list[Dropped]:
        """Return a message whose send failed to its place by `seq`; may drop like `put`."""
        return self._insert(item, at_end=False)

    def pop(self) -> Item | None:
        """The oldest message of any kind, or None when empty."""
        if not self._lesser and not self._significant:
            return None
        if not self._significant:
            return self._lesser.popleft()
        if not self._lesser or self._significant[0].seq < self._lesser[0].seq:
            return self._significant.popleft()
        return self._lesser.popleft()

    def _insert(self, item: Item, *, at_end: bool) -> list[Dropped]:
        significant = item.kind == "significant"
        queue = self._significant if significant else self._lesser
        if at_end or not queue or queue[-1].seq < item.seq:
            queue.append(item)
        else:
            position = next(i for i, queued in enumerate(queue) if queued.seq > item.seq)
            queue.insert(position, item)
        dropped: list[Dropped] = []
        while len(queue) > self._max["significant" if significant else "lesser"]:
            dropped.append(self._evict(queue))
        return dropped

    def _evict(self, queue: deque[Item]) -> Dropped:
        if queue is self._significant:
            return Dropped(queue.popleft(), "significant_overflow")
        for kind in ("empty", "detections"):
            for index, queued in enumerate(queue):
                if queued.kind == kind:
                    del queue[index]
                    return Dropped(queued, kind)
        raise AssertionError("a full lesser queue holds only empty and detections frames")
