"""What the state rules need to know of one node: whether it stopped reporting, and since when.

Kubernetes >= 1.36 no longer marks the pods of a dead node (phase `Unknown`, reason `NodeLost`):
the node lifecycle controller marks the node itself (its `Ready` condition `Unknown`, the
`node.kubernetes.io/unreachable` taint), and the pods stay `Running` until the taint manager
evicts them minutes later. `observe_node()` reads that from a node body into a small frozen
`NodeHealth`; the node index keeps only these. Like `replicas.observe`, it is total (any JSON gives
a summary, never an exception) and pure (no I/O, no kopf, no clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .replicas import as_list, as_mapping, parse_time

# The taints the node lifecycle controller puts on a node that stopped reporting (Ready Unknown)
# or reports itself not ready (Ready False).
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_LOST_TAINTS = frozenset({UNREACHABLE_TAINT, NOT_READY_TAINT})
_LOST_TAINT_EFFECTS = frozenset({"NoExecute", "NoSchedule"})
_NOT_READY = frozenset({"Unknown", "False"})


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """A compact summary of one node. Heartbeats do not change it, so a node that keeps
    reporting is one summary for its whole life."""

    name: str
    lost_since: datetime | None = None  # since when it stopped reporting; None: healthy
    signal: str | None = None  # what says so: "Ready=Unknown", "node.kubernetes.io/... taint"

    @property
    def lost(self) -> bool:
        return self.lost_since is not None


def observe_node(node: Mapping[str, Any]) -> NodeHealth:
    """Summarise a node body: the earliest moment any not-ready signal began. Never raises."""
    meta = as_mapping(node.get("metadata") if isinstance(node, Mapping) else None)
    spec = as_mapping(node.get("spec") if isinstance(node, Mapping) else None)
    status = as_mapping(node.get("status") if isinstance(node, Mapping) else None)
    name = _str(meta.get("name"))
    signals = [*_ready_signal(status), *_taint_signals(spec)]
    if not signals:
        return NodeHealth(name=name)
    # min() keeps the first of equal times: the Ready condition is named before a taint.
    since, signal = min(signals, key=lambda found: found[0])
    return NodeHealth(name=name, lost_since=since, signal=signal)


def _str(value: Any) -> str:
    # Untrusted JSON: a list or a dict where a string belongs must not reach a set lookup.
    return value if isinstance(value, str) else ""


def _ready_signal(status: Mapping[str, Any]) -> list[tuple[datetime, str]]:
    for condition in as_list(status.get("conditions")):
        if not isinstance(condition, Mapping) or condition.get("type") != "Ready":
            continue
        value = _str(condition.get("status"))
        # A not-ready condition without a readable time says nothing of since when: it is left
        # out, and the taint (or, later, the taint manager's eviction) still tells.
        since = parse_time(condition.get("lastTransitionTime"))
        if value in _NOT_READY and since is not None:
            return [(since, f"Ready={value}")]
        return []
    return []


def _taint_signals(spec: Mapping[str, Any]) -> list[tuple[datetime, str]]:
    found = []
    for taint in as_list(spec.get("taints")):
        if not isinstance(taint, Mapping):
            continue
        key, effect = _str(taint.get("key")), _str(taint.get("effect"))
        if key not in _LOST_TAINTS or effect not in _LOST_TAINT_EFFECTS:
            continue
        # The controller stamps timeAdded on NoExecute taints only; one without it is left out.
        since = parse_time(taint.get("timeAdded"))
        if since is not None:
            found.append((since, f"{key} taint"))
    return found
