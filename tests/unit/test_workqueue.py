"""The work queue: one wait per key, never two workers on a key, timers per key.

Time is a fake clock the tests move by hand: no test waits in real time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ucloud_operator.workqueue import WorkQueue

START = datetime(2030, 1, 1, tzinfo=UTC)


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic seconds and the wall clock, both moved only by `advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], object]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, lambda: callback(*args)))
        return timer

    def pending(self) -> int:
        return sum(not timer.cancelled for _, _, timer, _ in self._timers)

    def advance(self, seconds: float) -> None:
        """Move time on, firing every timer that falls due, in order."""
        self.now += seconds
        while self._timers and self._timers[0][0] <= self.now:
            _, _, timer, fire = heapq.heappop(self._timers)
            if not timer.cancelled:
                fire()


def queue_on(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(clock, wall_clock=clock.wall)


def ready(queue: WorkQueue[str]) -> str | None:
    """The key a worker would get without waiting, or None. `get` returns at once for a ready
    key and suspends otherwise: one step of it tells which, and a suspended one is closed."""
    getting = queue.get()
    try:
        getting.send(None)
    except StopIteration as returned:
        return returned.value  # type: ignore[no-any-return]
    getting.close()
    return None


async def test_a_burst_of_adds_is_one_item() -> None:
    queue = queue_on(FakeClock())
    for _ in range(5):
        queue.add("a")
    assert len(queue) == 1
    assert ready(queue) == "a"
    assert len(queue) == 0
    assert ready(queue) is None


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue = queue_on(FakeClock())
    queue.add("a")
    key = ready(queue)
    queue.add("a")  # an event while the worker is busy with "a"
    assert "a" in queue
    assert ready(queue) is None  # not handed to a second worker
    assert key is not None
    queue.done(key)
    assert ready(queue) == "a"


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue = queue_on(FakeClock())
    queue.add("a")
    key = ready(queue)
    assert key is not None
    queue.done(key)
    assert ready(queue) is None


async def test_add_after_fires_when_due_and_not_before() -> None:
    clock = FakeClock()
    queue = queue_on(clock)
    queue.add_after("a", 10)
    clock.advance(9.9)
    assert "a" not in queue and ready(queue) is None
    clock.advance(0.1)
    assert ready(queue) == "a"


async def test_add_at_fires_once_and_the_earlier_time_wins() -> None:
    clock = FakeClock()
    queue = queue_on(clock)
    soon = clock.wall() + timedelta(seconds=5)
    queue.add_at("a", soon + timedelta(hours=1))
    queue.add_at("a", soon)
    queue.add_at("a", soon + timedelta(hours=2))
    assert clock.pending() == 1  # the later times were dropped, the first one cancelled
    clock.advance(4)
    assert ready(queue) is None
    clock.advance(1)
    assert ready(queue) == "a"
    clock.advance(3 * 3600)  # past the later times: nothing more fires
    assert len(queue) == 0 and clock.pending() == 0


async def test_a_time_in_the_past_fires_at_once() -> None:
    clock = FakeClock()
    queue = queue_on(clock)
    queue.add_at("a", clock.wall() - timedelta(minutes=1))
    clock.advance(0)
    assert ready(queue) == "a"


async def test_forget_cancels_the_timer() -> None:
    clock = FakeClock()
    queue = queue_on(clock)
    queue.add_after("a", 2)
    queue.add_after("b", 2)
    queue.forget("a")
    clock.advance(2)
    assert ready(queue) == "b"
    assert ready(queue) is None


async def test_by_default_the_timers_are_the_running_loops() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0)
    assert await asyncio.wait_for(queue.get(), 5) == "a"  # a guard: it is due at once
