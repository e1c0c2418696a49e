"""What kopf_internals.py relies on in kopf: these fail on a kopf release that changes it."""

from __future__ import annotations

import asyncio
import inspect

from kopf._core.reactor import orchestration

from ucloud_operator.kopf_internals import WATCHER_TASK_PREFIX, watchers_alive


def test_kopf_names_each_watcher_task_by_its_resource() -> None:
    source = inspect.getsource(orchestration)
    assert f'name=f"{WATCHER_TASK_PREFIX}{{what}}"' in source
    assert 'what = f"{resource}@{namespace}"' in source


async def test_a_watcher_that_ended_fails_the_check() -> None:
    name = f"{WATCHER_TASK_PREFIX}ucloudjobs.v1.ucloud.dk@None"
    watcher = asyncio.create_task(asyncio.Event().wait(), name=name)
    await asyncio.sleep(0)
    assert watchers_alive(("ucloudjobs",)).ok
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert not watchers_alive(("ucloudjobs",)).ok  # a finished task leaves asyncio's list


async def test_no_watcher_for_a_resource_fails_the_check() -> None:
    assert not watchers_alive(("ucloudjobs",)).ok
