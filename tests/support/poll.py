"""Every wait of the cluster tiers: poll with a deadline, and on the deadline fail with the
evidence. Nothing sleeps for an outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

FIRST_INTERVAL = 0.05  # seconds between the first two looks
LONGEST_INTERVAL = 0.5  # ... growing to this


def poll(
    what: str, check: Callable[[], T | None], evidence: Callable[[], str], timeout: float
) -> T:
    """Call `check` until it returns a truthy value, and return that. An ApiException or OSError
    from `check` counts as not yet. On the deadline the test fails with `evidence()`."""
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (ApiException, OSError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)  # the pause between two looks, not a wait for an outcome
        interval = min(interval * 1.5, LONGEST_INTERVAL)
    pytest.fail(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n"
        f"{evidence()}",
        pytrace=False,
    )
