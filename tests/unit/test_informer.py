"""The pod informer against a scripted API: list pages, watch events, bookmarks, a watch that is
too old, a dropped connection, and malformed events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ucloud_operator.informer import JobKey, PodIndex, PodInformer
from ucloud_operator.kube import Expired, Refused, Transient

from .builders import PodBuilder

Script = list[dict[str, Any] | BaseException]


def pod_of(job: str, rank: int, version: str = "1") -> PodBuilder:
    built = PodBuilder(rank, job_name=job)
    built.body["metadata"]["resourceVersion"] = version
    return built


def event(kind: str, built: PodBuilder) -> dict[str, Any]:
    return {"type": kind, "object": built.build()}


def bookmark(version: str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": version}}}


def page(items: list[PodBuilder], version: str, more: str = "") -> dict[str, Any]:
    metadata = {"resourceVersion": version, **({"continue": more} if more else {})}
    return {"items": [item.build() for item in items], "metadata": metadata}


class ScriptedApi:
    """Answers list pages and watches in the order scripted; records what was asked. When the
    script runs out, the next watch hangs (as an idle one does) and `drained` is set."""

    def __init__(self, lists: list[dict[str, Any] | BaseException], watches: list[Script]) -> None:
        self.lists = lists
        self.watches = watches
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.paths: set[str] = set()
        self.drained = asyncio.Event()

    async def list_page(self, resource: str, path: str, params: Mapping[str, str]) -> Any:
        self.asked.append(("list", dict(params)))
        self.paths.add(path)
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


async def run_until_drained(
    api: ScriptedApi, namespace: str | None = None, index: PodIndex | None = None
) -> tuple[PodIndex, list[JobKey], PodInformer]:
    index = index if index is not None else PodIndex()
    changed: list[JobKey] = []
    informer = PodInformer(api, index, namespace, changed.append, first_retry_delay=0.0)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(api.drained.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not task.done() or task.cancelled()
    return index, changed, informer


def ranks(index: PodIndex, job: str) -> list[int | None]:
    return sorted(pod.rank for pod in index.pods(("default", job)) if pod.rank is not None)


def phases(index: PodIndex, job: str) -> dict[int | None, str]:
    return {pod.rank: pod.phase for pod in index.pods(("default", job))}


async def test_lists_every_page_then_watches_from_the_list_version() -> None:
    api = ScriptedApi(
        lists=[page([pod_of("a", 0)], "10", more="token"), page([pod_of("b", 0)], "12")],
        watches=[],
    )
    index, changed, informer = await run_until_drained(api)
    assert informer.synced.is_set()
    assert ranks(index, "a") == [0] and ranks(index, "b") == [0]
    assert changed == [("default", "a"), ("default", "b")]
    (_, first), (_, second), (_, watch) = api.asked
    assert "continue" not in first and second["continue"] == "token"
    assert first["labelSelector"] == second["labelSelector"] == watch["labelSelector"]
    assert watch["resourceVersion"] == "12" and watch["allowWatchBookmarks"] == "true"


async def test_events_update_the_index_and_report_the_job() -> None:
    api = ScriptedApi(
        lists=[page([pod_of("a", 0)], "10")],
        watches=[
            [
                event("ADDED", pod_of("a", 1, "11")),
                event("MODIFIED", pod_of("a", 0, "12").running()),
                event("DELETED", pod_of("a", 1, "13")),
            ]
        ],
    )
    index, changed, _ = await run_until_drained(api)
    assert phases(index, "a") == {0: "Running"}
    assert changed == [("default", "a")] * 4
    assert api.asked[-1][1]["resourceVersion"] == "13"  # the next watch goes on from there


async def test_a_bookmark_moves_the_version_the_next_watch_starts_from() -> None:
    api = ScriptedApi(lists=[page([], "10")], watches=[[bookmark("42")]])
    _, changed, _ = await run_until_drained(api)
    assert changed == []
    assert api.asked[-1] == ("watch", {**api.asked[-1][1], "resourceVersion": "42"})


async def test_a_dropped_watch_is_resumed_from_the_last_version_without_a_new_list() -> None:
    api = ScriptedApi(
        lists=[page([], "10")],
        watches=[[event("ADDED", pod_of("a", 0, "11")), Transient("connection reset")]],
    )
    index, _, _ = await run_until_drained(api)
    assert [verb for verb, _ in api.asked] == ["list", "watch", "watch"]
    assert api.asked[-1][1]["resourceVersion"] == "11"
    assert ranks(index, "a") == [0]


async def test_a_watch_too_old_lists_again_and_drops_the_pods_gone_meanwhile() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    api = ScriptedApi(
        lists=[
            page([pod_of("a", 0), pod_of("b", 0)], "10"),
            page([pod_of("a", 0, "30").running()], "30"),
        ],
        watches=[[gone]],
    )
    index, changed, _ = await run_until_drained(api)
    assert [verb for verb, _ in api.asked] == ["list", "watch", "list", "watch"]
    assert phases(index, "a") == {0: "Running"}
    assert ranks(index, "b") == []
    assert list(index.keys()) == [("default", "a")]
    assert changed.count(("default", "b")) == 2  # listed, then gone
    assert api.asked[-1][1]["resourceVersion"] == "30"


async def test_a_list_refused_is_retried_and_nothing_counts_as_listed_before() -> None:
    api = ScriptedApi(
        lists=[
            Refused("pods is forbidden"),
            Expired("continue expired"),
            page([pod_of("a", 0)], "5"),
        ],
        watches=[],
    )
    index, _, informer = await run_until_drained(api)
    assert informer.synced.is_set()
    assert ranks(index, "a") == [0]
    assert [verb for verb, _ in api.asked] == ["list", "list", "list", "watch"]


async def test_a_watch_error_other_than_gone_is_retried_from_the_same_version() -> None:
    failure = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}
    api = ScriptedApi(lists=[page([], "10")], watches=[[failure]])
    await run_until_drained(api)
    assert [verb for verb, _ in api.asked] == ["list", "watch", "watch"]
    assert api.asked[-1][1]["resourceVersion"] == "10"


async def test_malformed_events_change_nothing_and_stop_nothing() -> None:
    api = ScriptedApi(
        lists=[page([], "10")],
        watches=[
            [
                {"type": "ADDED"},
                {"object": {}},
                {"type": "MODIFIED", "object": []},
                event("ADDED", pod_of("a", 0, "11")),
            ]
        ],
    )
    index, _, _ = await run_until_drained(api)
    assert ranks(index, "a") == [0]


async def test_a_namespaced_informer_watches_its_namespace_and_relists_only_it() -> None:
    index = PodIndex()
    elsewhere = pod_of("x", 0)
    elsewhere.body["metadata"]["namespace"] = "other"
    index.put(elsewhere.observe())
    api = ScriptedApi(lists=[page([], "10")], watches=[])
    changed: list[JobKey] = []
    informer = PodInformer(api, index, "default", changed.append, first_retry_delay=0.0)
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(api.drained.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert list(index.keys()) == [("other", "x")]  # the other namespace's list is not this one's
    assert changed == []
    assert api.paths == {"/api/v1/namespaces/default/pods"}


def test_a_pod_whose_job_label_changes_moves_and_both_jobs_hear_of_it() -> None:
    index = PodIndex()
    assert index.put(pod_of("a", 0).observe()) == (("default", "a"),)
    moved = pod_of("b", 0)
    moved.body["metadata"]["name"] = "a-0"  # the same pod, relabelled
    assert index.put(moved.observe()) == (("default", "b"), ("default", "a"))
    assert list(index.keys()) == [("default", "b")]
    assert len(index) == 1


def test_removing_an_unknown_pod_reports_no_job() -> None:
    assert PodIndex().remove("default", "nothing") is None


async def test_without_a_namespace_every_namespace_is_watched() -> None:
    api = ScriptedApi(lists=[page([], "1")], watches=[])
    _, _, informer = await run_until_drained(api)
    assert api.paths == {"/api/v1/pods"}
    assert informer.scope == "all namespaces"
