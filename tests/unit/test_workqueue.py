"""The work queue: one wait per key, never two workers on a key, timers per key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ucloud_operator.workqueue import WorkQueue


async def test_a_burst_of_adds_is_one_item() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    assert len(queue) == 1
    assert await queue.get() == "a"
    assert len(queue) == 0


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")  # an event while the worker is busy with "a"
    assert queue._ready.empty()  # not handed to a second worker
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_add_at_fires_once_and_the_earlier_time_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    soon = datetime.now(UTC) + timedelta(milliseconds=50)
    queue.add_at("a", soon + timedelta(hours=1))
    queue.add_at("a", soon)
    queue.add_at("a", soon + timedelta(hours=2))
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert len(queue._timers) == 0


async def test_forget_cancels_the_timer() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_at("a", datetime.now(UTC) + timedelta(milliseconds=20))
    queue.forget("a")
    await asyncio.sleep(0.05)
    assert len(queue) == 0
