"""Prometheus metrics of the operator (served on /metrics by `http.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .models import JobState

REGISTRY = CollectorRegistry()

# Sub-millisecond to minutes: the latency targets are 50 ms (paced) and 5 s (burst).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TRANSITIONS = Counter(
    "ucloud_job_transitions",
    "State changes written, by old state (new for a job's first), new state and reason.",
    ["from_state", "to_state", "reason"],
    registry=REGISTRY,
)
POD_EVENT_TO_STATUS = Histogram(
    "ucloud_pod_event_to_status_seconds",
    "From a pod event reaching the operator to the status write it caused.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECONCILE = Histogram(
    "ucloud_reconcile_seconds",
    "Duration of one pass of the sync loop for one job, API calls included.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "ucloud_reconcile_errors",
    "Passes that failed and were requeued with backoff.",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "ucloud_api_requests",
    "Requests to the Kubernetes API by verb, resource and HTTP code (0: no answer).",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
API_LATENCY = Histogram(
    "ucloud_api_request_duration_seconds",
    "Duration of each answered request to the Kubernetes API (per attempt), by verb and resource.",
    ["verb", "resource"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
API_RETRIES = Counter(
    "ucloud_api_retries",
    "Requests retried after a transient failure.",
    ["verb", "resource"],
    registry=REGISTRY,
)
WATCH_EVENTS = Counter(
    "ucloud_watch_events",
    "Watch events handled, by resource.",
    ["resource"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "ucloud_leader", "1 while this replica holds the Lease and acts, else 0.", registry=REGISTRY
)
NODE_FACTS = Gauge(
    "ucloud_node_facts",
    "1 while the nodes are listed and watched (a lost node is told from them), 0 while the "
    "operator may not read them (403) or has not listed them yet.",
    registry=REGISTRY,
)
GANG_ADMISSION = Gauge(
    "ucloud_gang_admission",
    "1 when the replicas of a gang are placed all or none through PodGroups of scheduling.k8s.io "
    "(version: the one used), 0 when gang admission is off; mode: --gang-admission.",
    ["mode", "version"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("ucloud_workqueue_depth", "Job keys waiting for a pass.", registry=REGISTRY)
EVENT_LOOP_LAG = Histogram(
    "ucloud_event_loop_lag_seconds",
    "How late a 100 ms timer of the event loop fired: how long the loop was held up.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENT_LOOP_LAG_MAX = Gauge(
    "ucloud_event_loop_lag_max_seconds",
    "The longest event-loop stall since the operator started.",
    registry=REGISTRY,
)


async def measure_event_loop_lag(interval: float = 0.1) -> None:
    """Sleep `interval` again and again; how late each wake-up comes is a stall of the loop
    (a long callback, a garbage collection, or the process waiting for a CPU)."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    while True:
        asleep = loop.time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - asleep - interval)
        EVENT_LOOP_LAG.observe(lag)
        if lag > longest:
            longest = lag
            EVENT_LOOP_LAG_MAX.set(lag)


class JobsByState(Collector):
    """`ucloud_jobs{state}`, counted from the job index at scrape time (never drifts)."""

    def __init__(self, states: Callable[[], Iterable[JobState | None]]) -> None:
        self._states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = dict.fromkeys(JobState, 0)
        for state in self._states():
            if state is not None:
                counts[state] += 1
        family = GaugeMetricFamily("ucloud_jobs", "UCloudJobs by state.", labels=["state"])
        for state, count in counts.items():
            family.add_metric([state.value], count)
        yield family
