"""The pod and node informers against a scripted API: list pages, watch events, bookmarks, a
watch that is too old, a dropped connection, malformed events, and nodes the operator may not
read."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ucloud_operator.informer import JobKey, NodeIndex, NodeInformer, PodIndex, PodInformer
from ucloud_operator.kube import Expired, Forbidden, Refused, Transient

from .builders import node
from .fakes import ScriptedApi, bookmark, event, forbidden, page, pod_of, run_informer_until_drained


async def run_until_drained(
    api: ScriptedApi, namespace: str | None = None, index: PodIndex | None = None
) -> tuple[PodIndex, list[JobKey], PodInformer]:
    index = index if index is not None else PodIndex()
    changed: list[JobKey] = []
    informer = PodInformer(api, index, namespace, changed.append, first_retry_delay=0.0)
    await run_informer_until_drained(api, informer)
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


# --- nodes ---------------------------------------------------------------------------------------


async def run_nodes_until_drained(
    api: ScriptedApi, index: NodeIndex | None = None
) -> tuple[NodeIndex, list[str], NodeInformer]:
    index = index if index is not None else NodeIndex()
    changed: list[str] = []
    informer = NodeInformer(
        api, index, changed.append, first_retry_delay=0.0, forbidden_retry_delay=0.0
    )
    await run_informer_until_drained(api, informer)
    return index, changed, informer


async def test_nodes_are_listed_and_only_a_change_of_health_queues_their_jobs() -> None:
    api = ScriptedApi(
        lists=[page([node("n0"), node("n1").unreachable(5)], "10")],
        watches=[
            [
                event("MODIFIED", node("n0").heartbeat(10)),  # a heartbeat: nothing to tell
                event("MODIFIED", node("n0").unreachable(1)),
                event("MODIFIED", node("n0").unreachable(1).heartbeat(20)),
                event("MODIFIED", node("n1")),  # reporting again
                event("DELETED", node("n0").unreachable(1)),
                event("ADDED", node("n2")),
            ]
        ],
    )
    index, changed, informer = await run_nodes_until_drained(api)
    assert informer.synced.is_set() and informer.forbidden is None
    assert changed == ["n1", "n0", "n1", "n0"]
    assert sorted(index.names()) == ["n1", "n2"]
    n1 = index.get("n1")
    assert n1 is not None and not n1.lost
    assert api.paths == {"/api/v1/nodes"}
    assert all("labelSelector" not in params for _, params in api.asked)


async def test_a_node_relist_drops_the_nodes_gone_meanwhile() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    api = ScriptedApi(
        lists=[page([node("n0").unreachable(5), node("n1")], "10"), page([node("n1")], "30")],
        watches=[[gone]],
    )
    index, changed, _ = await run_nodes_until_drained(api)
    assert list(index.names()) == ["n1"]
    assert changed == ["n0", "n0"]  # lost, then gone: its replicas fall back to their own signals


async def test_nodes_the_operator_may_not_read_are_said_once_and_hold_nothing_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = ScriptedApi(lists=[forbidden(), forbidden()], watches=[])
    with caplog.at_level(logging.WARNING, logger="ucloud_operator.informer"):
        index, changed, informer = await run_nodes_until_drained(api)
    assert informer.synced.is_set()
    assert informer.forbidden is not None and "cannot list" in informer.forbidden
    assert len(index) == 0 and changed == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "may not list or watch nodes" in warnings[0]
    assert "rbac.nodes" in warnings[0]
    assert [verb for verb, _ in api.asked] == ["list", "list", "list"]  # asked again, quietly


async def test_nodes_readable_again_are_listed_and_the_refusal_is_forgotten() -> None:
    api = ScriptedApi(lists=[forbidden(), page([node("n0").unreachable(5)], "7")], watches=[])
    index, changed, informer = await run_nodes_until_drained(api)
    assert informer.forbidden is None
    assert changed == ["n0"] and len(index) == 1


async def test_a_node_watch_refused_later_drops_what_it_knew() -> None:
    refused = {"type": "ERROR", "object": {"kind": "Status", "code": 403, "message": "forbidden"}}
    api = ScriptedApi(
        lists=[page([node("n0").unreachable(5), node("n1")], "10")], watches=[[refused]]
    )
    index, changed, informer = await run_nodes_until_drained(api)
    assert informer.forbidden == "forbidden"
    assert len(index) == 0  # stale facts would be worse than none
    assert changed == ["n0", "n0"]


async def test_the_pod_informer_keeps_retrying_a_403() -> None:
    api = ScriptedApi(
        lists=[Forbidden("pods is forbidden"), page([pod_of("a", 0)], "5")], watches=[]
    )
    index, _, informer = await run_until_drained(api)
    assert informer.forbidden is None
    assert ranks(index, "a") == [0]


def test_the_jobs_on_a_node_are_the_jobs_with_a_replica_there() -> None:
    index = PodIndex()
    index.put(pod_of("a", 0).on_node("n0").observe())
    index.put(pod_of("a", 1).on_node("n1").observe())
    index.put(pod_of("b", 0).on_node("n1").observe())
    index.put(pod_of("c", 0).observe())  # not scheduled yet
    assert index.jobs_on_node("n0") == [("default", "a")]
    assert sorted(index.jobs_on_node("n1")) == [("default", "a"), ("default", "b")]
    assert index.jobs_on_node("n9") == []


async def test_a_list_or_watch_throttled_waits_as_the_api_server_asks() -> None:
    """Retry-After (carried by the Transient) is waited for when longer than the informer's own
    backoff, up to 30 s; a shorter one leaves the backoff as it is."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    api = ScriptedApi(
        lists=[
            Transient("429: too many requests", retry_after=7.0),
            Transient("503: unavailable", retry_after=600.0),
            Transient("429: too many requests", retry_after=0.0),
            page([pod_of("a", 0)], "5"),
        ],
        watches=[[Transient("429: too many requests", retry_after=20.0)]],
    )
    informer = PodInformer(
        api, PodIndex(), None, lambda key: None, first_retry_delay=0.5, sleep=sleep
    )
    await run_informer_until_drained(api, informer)
    assert waits[:2] == [7.0, 30.0]
    assert 1.6 <= waits[2] <= 2.4  # the third backoff (0.5 * 2**2, jittered by 0.8-1.2)
    assert waits[3] == 20.0  # the watch's; longer than its backoff (at most 4.8 s)
    assert [verb for verb, _ in api.asked] == ["list"] * 4 + ["watch"] * 2
