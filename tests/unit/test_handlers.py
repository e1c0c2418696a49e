"""The shell's wiring of the node informer: a lost node queues its jobs, and nodes the operator
may not read neither stop the sync loop nor hold readiness back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ucloud_operator.controller import Controller, JobKey
from ucloud_operator.handlers import Runtime
from ucloud_operator.informer import NodeIndex, PodIndex
from ucloud_operator.rules import Settings
from ucloud_operator.settings import parse

from .builders import node
from .fakes import FakeApi, ScriptedApi, forbidden, page, pod_of


class RecordingController(Controller):
    def __init__(self) -> None:
        super().__init__(FakeApi(), Settings(), lambda key: None, lambda key: ())
        self.enqueued: list[tuple[JobKey, bool]] = []

    def enqueue(self, key: JobKey, pod_event: bool = False) -> None:
        self.enqueued.append((key, pod_event))
        super().enqueue(key, pod_event)


class Started:
    """A Runtime with its informers and sync loop running on scripted APIs, and a stand-in for
    kopf's job watcher (a task of that name is what the health check looks for)."""

    def __init__(self, pods_api: ScriptedApi, nodes_api: ScriptedApi, pods: PodIndex) -> None:
        self.runtime = Runtime(parse([], {}))
        self.controller = RecordingController()
        self.runtime.start_pod_informers(pods_api, pods, self.controller)  # type: ignore[arg-type]
        self.runtime.start_node_informer(
            nodes_api,
            NodeIndex(),
            pods,
            self.controller,  # type: ignore[arg-type]
        )
        self.runtime.task = asyncio.create_task(self.runtime.run_controller(self.controller, 1))
        self.watcher = asyncio.create_task(
            asyncio.Event().wait(), name="watcher for ucloudjobs.v1.ucloud.dk@none"
        )

    async def stop(self) -> None:
        tasks = [
            self.runtime.task,
            self.runtime.node_task,
            self.watcher,
            *self.runtime.informer_tasks,
        ]
        for task in tasks:
            assert task is not None
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def started(
    pods_api: ScriptedApi, nodes_api: ScriptedApi, pods: PodIndex | None = None
) -> AsyncIterator[Started]:
    running = Started(pods_api, nodes_api, pods or PodIndex())
    try:
        yield running
    finally:
        await running.stop()


async def test_a_node_that_stops_reporting_queues_the_jobs_with_a_replica_on_it() -> None:
    replicas = [pod_of("a", 0).on_node("n0"), pod_of("b", 0).on_node("n1")]
    pods = PodIndex()
    for replica in replicas:  # known before the nodes are listed
        pods.put(replica.observe())
    pods_api = ScriptedApi(lists=[page(replicas, "1")], watches=[])
    nodes_api = ScriptedApi(lists=[page([node("n0").unreachable(5), node("n1")], "3")], watches=[])
    async with started(pods_api, nodes_api, pods) as running:
        await asyncio.wait_for(nodes_api.drained.wait(), 5)
        by_node = [key for key, pod_event in running.controller.enqueued if not pod_event]
        assert by_node == [("default", "a")]
        assert running.runtime.node_facts()


async def test_nodes_the_operator_may_not_read_do_not_hold_readiness_back() -> None:
    pods_api = ScriptedApi(lists=[page([], "1")], watches=[])
    nodes_api = ScriptedApi(lists=[forbidden()], watches=[])
    async with started(pods_api, nodes_api) as running:
        informer = running.runtime.node_informer
        assert informer is not None
        await asyncio.wait_for(informer.synced.wait(), 5)
        await asyncio.wait_for(pods_api.drained.wait(), 5)
        check = running.runtime.ready()
        assert check.ok, check.detail
        assert "forbidden" in str(check.detail["nodes listed"])
        assert check.detail["node informer"] is True
        assert not running.runtime.node_facts()
        assert running.runtime.task is not None and not running.runtime.task.done()
