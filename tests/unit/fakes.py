"""Fakes the unit tests share: the controller's recording API, and a scripted list-and-watch API
and what it answers with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ucloud_operator.informer import Informer
from ucloud_operator.kube import Forbidden, Refused, Transient
from ucloud_operator.status import Event

from .builders import NodeBuilder, PodBuilder

Script = list[dict[str, Any] | BaseException]


def pod_of(job: str, rank: int, version: str = "1") -> PodBuilder:
    built = PodBuilder(rank, job_name=job)
    built.body["metadata"]["resourceVersion"] = version
    return built


def event(kind: str, built: PodBuilder | NodeBuilder | dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": built if isinstance(built, dict) else built.build()}


def bookmark(version: str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": version}}}


def page(
    items: list[PodBuilder] | list[NodeBuilder] | list[dict[str, Any]], version: str, more: str = ""
) -> dict[str, Any]:
    metadata = {"resourceVersion": version, **({"continue": more} if more else {})}
    built = [item if isinstance(item, dict) else item.build() for item in items]
    return {"items": built, "metadata": metadata}


class ScriptedApi:
    """Answers list pages and watches in the order scripted; records what was asked. When the
    script runs out, the next list or watch hangs (as an idle watch does) and `drained` is
    set."""

    def __init__(self, lists: list[dict[str, Any] | BaseException], watches: list[Script]) -> None:
        self.lists = lists
        self.watches = watches
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.paths: set[str] = set()
        self.drained = asyncio.Event()

    async def list_page(self, resource: str, path: str, params: Mapping[str, str]) -> Any:
        self.asked.append(("list", dict(params)))
        self.paths.add(path)
        if not self.lists:
            self.drained.set()
            await asyncio.Event().wait()
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def watch(
        self, resource: str, path: str, params: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[Any]:
        self.asked.append(("watch", dict(params)))
        self.paths.add(path)
        if not self.watches:
            self.drained.set()
            await asyncio.Event().wait()
        for item in self.watches.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


async def run_informer_until_drained(api: ScriptedApi, informer: Informer[Any, Any]) -> None:
    """Run the informer until the scripted API has given out every answer, then stop it."""
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(api.drained.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def forbidden() -> Forbidden:
    return Forbidden(
        'nodes is forbidden: User "system:serviceaccount:ucloud-system:ucloud-op"'
        ' cannot list resource "nodes" in API group "" at the cluster scope'
    )


class FakeApi:
    """Records every call; `refuse` and `fail` make creates fail, keyed by the object's name, or
    by "Kind/name" for one kind only."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.created: list[dict[str, Any]] = []  # the bodies of the creates that went through
        self.refuse: dict[str, str] = {}
        self.fail: set[str] = set()

    async def create(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        keys = (name, f"{body['kind']}/{name}")
        self.calls.append((f"create {body['kind']}", name))
        for key in keys:
            if key in self.refuse:
                raise Refused(self.refuse[key])
            if key in self.fail:
                raise Transient("connection reset")
        self.created.append(body)

    async def delete_pod(self, namespace: str, name: str) -> None:
        self.calls.append(("delete Pod", name))

    async def delete_service(self, namespace: str, name: str) -> None:
        self.calls.append(("delete Service", name))
        if name in self.fail:
            raise Transient("connection reset")

    async def delete_pod_group(self, namespace: str, name: str, version: str) -> None:
        self.calls.append(("delete PodGroup", f"{version}/{name}"))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append(("patch status", status))

    async def emit_event(self, namespace: str, name: str, uid: str, event: Event) -> None:
        self.calls.append(("event", event.reason))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]
