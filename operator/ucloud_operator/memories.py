"""kopf's memory of every watched object, in one small object instead of six.

kopf keeps a record per object it has seen (every job; every replica pod too, before the pods had an
informer of their own) until the object is deleted: four dataclasses, a set and a dict, for
throttling errors, retrying index functions and running daemons. At 10,000 jobs x 4 pods that was
250,000 of the 400,000 objects the garbage collector scans in a full collection. `CompactMemories`
keeps the same fields in one object with slots (bench/mem_probe.py at that size: 402,509 -> 203,522
tracked objects, 228 -> 187 MiB); it is handed to `kopf.operator(memories=...)`.

The record is kopf's internal interface (pinned kopf); `tests/unit/test_memories.py` fails when
its fields change.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any, cast

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

# The fields of kopf's records kept as slots; the rest are served by properties.
FIELDS: dict[str, tuple[str, ...]] = {
    "ResourceMemory": ("memo", "remaining_patch", "noticed_by_listing", "fully_handled_once"),
    "Throttler": ("source_of_delays", "last_used_delay", "active_until"),
    "IndexingMemory": ("indexing_state",),
    "DaemonsMemory": ("live_fresh_body", "idle_reset_time"),
}


class CompactMemory:
    """One object's record: kopf's `ResourceMemory` and the three records it holds (error
    throttler, indexing state, daemons) as slots of one object, each of them served by itself.
    The daemon containers are made only if a daemon ever needs them (this operator has none)."""

    __slots__ = (
        *FIELDS["ResourceMemory"],
        *FIELDS["Throttler"],
        *FIELDS["IndexingMemory"],
        *FIELDS["DaemonsMemory"],
        "_forever_stopped",
        "_running_daemons",
    )

    def __init__(self, memo: Any, noticed_by_listing: bool) -> None:
        self.memo = memo
        self.remaining_patch: Any = None
        self.noticed_by_listing = noticed_by_listing
        self.fully_handled_once = False
        self.source_of_delays: Any = None
        self.last_used_delay: float | None = None
        self.active_until: float | None = None
        self.indexing_state: Any = None
        self.live_fresh_body: Any = None
        self.idle_reset_time = asyncio.get_running_loop().time()
        self._forever_stopped: set[Any] | None = None
        self._running_daemons: dict[Any, Any] | None = None

    @property
    def error_throttler(self) -> CompactMemory:
        return self

    @property
    def indexing_memory(self) -> CompactMemory:
        return self

    @property
    def daemons_memory(self) -> CompactMemory:
        return self

    @property
    def forever_stopped(self) -> set[Any]:
        if self._forever_stopped is None:
            self._forever_stopped = set()
        return self._forever_stopped

    @property
    def running_daemons(self) -> dict[Any, Any]:
        if self._running_daemons is None:
            self._running_daemons = {}
        return self._running_daemons


class CompactMemories(ResourceMemories):
    """kopf's inventory of records, making `CompactMemory` records."""

    async def recall(
        self,
        raw_body: Any,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        key = self._build_key(raw_body)
        memory = self._items.get(key)
        if memory is None:
            memo = copy.copy(memobase) if memobase is not None else kopf.Memo()
            memory = cast(ResourceMemory, CompactMemory(memo, noticed_by_listing))
            if not ephemeral:
                self._items[key] = memory
        return memory

    def iter_all_daemon_memories(self) -> Iterator[Any]:
        # Only the records that ever ran a daemon: kopf walks them when pausing and at exit.
        for memory in self._items.values():
            if cast(CompactMemory, memory)._running_daemons:
                yield memory
