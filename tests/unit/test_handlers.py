"""The kopf shell's pod index: a pod event queues its job only when what the rules read of the
pod changed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from ucloud_operator import handlers
from ucloud_operator.replicas import observe

from .builders import pod

KEY = ("default", "sim")


class QueueRecorder:
    def __init__(self) -> None:
        self.queued: list[tuple[str, str]] = []

    def enqueue(self, key: tuple[str, str], pod_event: bool = False) -> None:
        assert pod_event
        self.queued.append(key)


def index(body: dict[str, Any], before: dict[Any, Any]) -> tuple[dict[Any, Any], list[Any]]:
    """One pod event through the index function, with the index as it was before the event."""
    controller = QueueRecorder()
    memo = SimpleNamespace(runtime=SimpleNamespace(controller=controller))
    indexed = asyncio.run(handlers.replica_pods(body=body, memo=memo, replica_pods=before))
    return indexed, controller.queued


def test_a_new_pod_is_indexed_and_queues_its_job() -> None:
    body = pod(0).body
    indexed, queued = index(body, {})
    assert indexed == {KEY: observe(body)}
    assert queued == [KEY]


def test_an_event_that_changes_nothing_the_rules_read_queues_no_pass() -> None:
    pending = pod(0).body
    later = pod(0).body
    later["metadata"]["resourceVersion"] = "43"
    later["status"]["conditions"] = [{"type": "Initialized", "status": "True"}]
    indexed, queued = index(later, {KEY: [observe(pending), observe(pod(1).body)]})
    assert indexed == {KEY: observe(later)}
    assert queued == []


def test_a_pod_that_starts_running_queues_its_job() -> None:
    _, queued = index(pod(0).running().body, {KEY: [observe(pod(0).body)]})
    assert queued == [KEY]
