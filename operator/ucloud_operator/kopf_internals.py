"""The one place the operator relies on kopf's internals, with why each is kept.

**kopf's watcher tasks, for the liveness probe.** kopf runs each watch in a task named
"watcher for <resource>@<namespace>" (kopf/_core/reactor/orchestration.py) and never restarts a
watcher that fails: it logs the error and the task ends, while the operator process runs on, deaf
to every UCloudJob event. kopf offers no public signal for this; `/healthz` looks for the task by
its name and fails when it is gone, so that the kubelet restarts the pod.
`tests/unit/test_kopf_internals.py` fails when a kopf release names or starts its watchers
another way.
"""

from __future__ import annotations

import asyncio

from .http import Check

WATCHER_TASK_PREFIX = "watcher for "


def watchers_alive(resources: tuple[str, ...]) -> Check:
    """Every resource has a kopf watcher task, and none has ended."""
    watchers = {
        t.get_name(): not t.done()
        for t in asyncio.all_tasks()
        if t.get_name().startswith(WATCHER_TASK_PREFIX)
    }
    detail: dict[str, object] = {"watchers": watchers}
    ok = all(watchers.values()) and all(
        any(resource in name for name in watchers) for resource in resources
    )
    return Check(ok, detail)
