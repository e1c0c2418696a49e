"""The event-loop lag probe: a callback that holds the loop up shows as a stall."""

from __future__ import annotations

import asyncio
import time

from ucloud_operator.metrics import REGISTRY, measure_event_loop_lag


async def test_a_blocked_event_loop_shows_as_lag() -> None:
    probe = asyncio.create_task(measure_event_loop_lag(interval=0.01))
    try:
        await asyncio.sleep(0)  # one turn of the loop: the probe is now asleep on its timer
        time.sleep(0.3)  # the stall under test: a callback that never yields
        deadline = time.monotonic() + 5
        while (longest() or 0.0) < 0.25:
            assert time.monotonic() < deadline, "the stall was not measured"
            await asyncio.sleep(0.01)
    finally:
        probe.cancel()
    assert (longest() or 0.0) < 5  # the stall itself, not the time since start
    assert (REGISTRY.get_sample_value("ucloud_event_loop_lag_seconds_count") or 0) >= 1


def longest() -> float | None:
    return REGISTRY.get_sample_value("ucloud_event_loop_lag_max_seconds")
