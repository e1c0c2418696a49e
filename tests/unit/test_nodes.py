"""Reading nodes into health summaries: every not-ready signal, the earliest wins, heartbeats
change nothing, and totality on any JSON."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings

from ucloud_operator.nodes import NOT_READY_TAINT, UNREACHABLE_TAINT, observe_node

from .builders import NOW, node, shaped_like

NODE_LIKE = shaped_like(
    "metadata",
    "name",
    "spec",
    "taints",
    "key",
    "effect",
    "timeAdded",
    "status",
    "conditions",
    "type",
    "lastTransitionTime",
    "Ready",
    "Unknown",
    "NoExecute",
    UNREACHABLE_TAINT,
)


@settings(max_examples=1000)
@given(NODE_LIKE)
def test_observe_node_never_raises_on_node_shaped_garbage(body: Any) -> None:
    observe_node(body if isinstance(body, dict) else {"spec": body, "status": body})


def test_a_ready_node_is_healthy() -> None:
    health = node("n").observe()
    assert (health.name, health.lost, health.lost_since, health.signal) == ("n", False, None, None)


@pytest.mark.parametrize("status", ["Unknown", "False"])
def test_ready_unknown_or_false_is_lost_since_its_transition(status: str) -> None:
    health = node().ready(status, seconds_ago=75).observe()
    assert health.lost
    assert health.lost_since == NOW - timedelta(seconds=75)
    assert health.signal == f"Ready={status}"


@pytest.mark.parametrize("key", [UNREACHABLE_TAINT, NOT_READY_TAINT])
@pytest.mark.parametrize("effect", ["NoExecute", "NoSchedule"])
def test_a_lost_node_taint_alone_is_lost_since_it_was_added(key: str, effect: str) -> None:
    health = node().tainted(key, effect, seconds_ago=30).observe()
    assert health.lost_since == NOW - timedelta(seconds=30)
    assert health.signal == f"{key} taint"


def test_the_earliest_signal_tells_since_when() -> None:
    health = node().ready("Unknown", 20).tainted(UNREACHABLE_TAINT, "NoExecute", 50).observe()
    assert health.lost_since == NOW - timedelta(seconds=50)
    assert health.signal == f"{UNREACHABLE_TAINT} taint"
    # On a tie the condition is named, as the node lifecycle controller sets it first.
    assert node().unreachable(40).observe().signal == "Ready=Unknown"


def test_other_taints_and_taints_without_a_time_say_nothing() -> None:
    health = (
        node()
        .tainted("example.com/maintenance", "NoExecute", 30)
        .tainted(UNREACHABLE_TAINT, "NoSchedule", None)
        .tainted(UNREACHABLE_TAINT, "PreferNoSchedule", 30)
        .observe()
    )
    assert not health.lost


def test_a_not_ready_condition_without_a_readable_time_is_left_out() -> None:
    built = node().ready("Unknown", 10)
    built.ready_condition["lastTransitionTime"] = "yesterday"
    assert not built.observe().lost


def test_heartbeats_do_not_change_the_summary() -> None:
    assert node().observe() == node().heartbeat(40).observe()
    assert node().unreachable(5).observe() == node().unreachable(5).heartbeat(40).observe()
