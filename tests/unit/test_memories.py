"""The compact record of every watched object stands in for kopf's own: same fields, and kopf's
throttling and inventory code work on it."""

from __future__ import annotations

import dataclasses
import gc
import logging

import pytest
from kopf._core.actions.throttlers import Throttler, throttled
from kopf._core.engines.daemons import DaemonsMemory
from kopf._core.engines.indexing import IndexingMemory
from kopf._core.reactor.inventory import ResourceMemory

from ucloud_operator.handlers import SharedMemo
from ucloud_operator.memories import FIELDS, CompactMemories, CompactMemory

KOPF_RECORDS = (ResourceMemory, Throttler, IndexingMemory, DaemonsMemory)


def body(uid: str) -> dict[str, object]:
    return {"metadata": {"namespace": "ns", "name": uid, "uid": uid}}


@pytest.mark.parametrize("record", KOPF_RECORDS, ids=lambda record: record.__name__)
def test_every_field_of_kopfs_record_is_kept(record: type) -> None:
    properties = {name for name, item in vars(CompactMemory).items() if isinstance(item, property)}
    missing = {field.name for field in dataclasses.fields(record)} - {
        *FIELDS[record.__name__],
        *properties,
    }
    assert not missing, f"kopf's {record.__name__} has fields CompactMemory lacks: {missing}"


async def test_one_record_per_object_until_it_is_forgotten() -> None:
    memories = CompactMemories()
    memo = SharedMemo()
    first = await memories.recall(body("a"), memobase=memo, noticed_by_listing=True)
    assert await memories.recall(body("a"), memobase=memo) is first
    assert first.memo is memo  # the shared memo is not copied per object
    assert first.noticed_by_listing and not first.fully_handled_once
    assert first.error_throttler is first and first.indexing_memory is first
    assert await memories.recall(body("b"), memobase=memo) is not first
    await memories.forget(body("a"))
    assert await memories.recall(body("a"), memobase=memo) is not first


async def test_an_ephemeral_record_is_not_kept() -> None:
    memories = CompactMemories()
    first = await memories.recall(body("a"), ephemeral=True)
    assert await memories.recall(body("a")) is not first


async def test_the_record_is_a_single_collector_tracked_object() -> None:
    memories = CompactMemories()
    memory = await memories.recall(body("a"), memobase=SharedMemo())
    tracked = [item for item in gc.get_referents(memory) if gc.is_tracked(item)]
    assert tracked == [memory.memo, CompactMemory]  # no sets, dicts or records of its own


async def test_kopfs_error_throttling_runs_on_the_record() -> None:
    memory = await CompactMemories().recall(body("a"), memobase=SharedMemo())
    logger = logging.getLogger("test")
    async with throttled(throttler=memory.error_throttler, delays=[0], logger=logger) as run:
        assert run
        raise RuntimeError("a failing index function")
    assert memory.error_throttler.last_used_delay == 0
    async with throttled(throttler=memory.error_throttler, delays=[0], logger=logger) as run:
        assert run
    assert memory.error_throttler.source_of_delays is None
    assert memory.error_throttler.active_until is None


async def test_daemon_containers_are_made_only_when_used() -> None:
    memories = CompactMemories()
    memory = await memories.recall(body("a"), memobase=SharedMemo())
    assert list(memories.iter_all_daemon_memories()) == []
    memory.daemons_memory.running_daemons["handler"] = object()
    memory.daemons_memory.forever_stopped.add("other")
    assert list(memories.iter_all_daemon_memories()) == [memory]
    assert memory.daemons_memory.forever_stopped == {"other"}
