"""A work queue of job keys, in the manner of client-go's: a key waits at most once, is never
processed by two workers at a time, and a burst of events for one job collapses into one pass.

Delayed adds (expiry, grace ends, retries) are timers of a clock, one per key at most: no task per
job. The clock is the running event loop unless one is given (a test's fake clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the queue needs of a clock: the asyncio event loop is one."""

    def time(self) -> float:
        """Now, in seconds of this clock (monotonic)."""
        ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Call `callback(*args)` once this clock's time reaches `when`."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WorkQueue(Generic[K]):
    def __init__(
        self, clock: Clock | None = None, wall_clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._clock = clock  # None: the running event loop, looked up when a timer is set
        self._wall_clock = wall_clock
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()  # waiting in _ready, or to be re-queued when done
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, Timer]] = {}  # due, in the clock's time

    def __len__(self) -> int:
        return len(self._dirty)

    def __contains__(self, key: object) -> bool:
        """Waiting for a pass (a delayed add counts once it is due)."""
        return key in self._dirty

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.put_nowait(key)

    def add_at(self, key: K, when: datetime) -> None:
        """Add `key` at wall-clock time `when`; an earlier pending time for the key wins."""
        self.add_after(key, (when - self._wall_clock()).total_seconds())

    def add_after(self, key: K, seconds: float) -> None:
        """Add `key` in `seconds`; an earlier pending time for the key wins."""
        clock: Clock = self._clock if self._clock is not None else asyncio.get_running_loop()
        due = clock.time() + max(0.0, seconds)
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, clock.call_at(due, self._fire, key))

    def forget(self, key: K) -> None:
        """Drop the key's pending timer (the job is gone)."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    async def get(self) -> K:
        key = await self._ready.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._ready.put_nowait(key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)
