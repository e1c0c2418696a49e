"""Latency, throughput and transitions of one phase, from the watcher's receive-stamped events.

Clock: `time.monotonic_ns()` taken in the watcher process when a watch chunk arrives, before it is
parsed; the same watch path and clock serve both systems, so delivery delay largely cancels.

- RUNNING latency = first event showing the parent RUNNING (UCloudJob `status.state`, Job
  `status.ready == R`) minus the latest of its replicas' first `phase: Running` events.
- Completion latency = first event showing the parent final (UCloudJob SUCCESS/FAILURE/EXPIRED,
  Job condition Complete) minus the first (UCloudJob: its rule 3c ends the job when one replica
  terminates) or the last (Job: it completes when R pods succeeded) replica seen terminated
  (`Succeeded`/`Failed`). Both variants are kept for both systems.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from stats import peak_rate, summary

FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "EXPIRED"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass
class JobTimes:
    pod_running: dict[str, int] = field(default_factory=dict)  # pod -> first Running stamp
    pod_terminated: dict[str, int] = field(default_factory=dict)
    created: int | None = None  # first event of the parent
    running: int | None = None
    final: int | None = None
    final_state: str = ""
    transitions: list[int] = field(default_factory=list)  # stamps of state changes
    last_state: str = ""


class Tail:
    """Reads a growing watcher file incrementally; keeps per-job times (bounded by the file)."""

    def __init__(self, path: str, system: str, replicas: int) -> None:
        self.path = path
        self.system = system  # "operator" or "jobs"
        self.replicas = replicas
        self.offset = 0
        self.partial = b""
        self.jobs: dict[str, JobTimes] = defaultdict(JobTimes)
        self.pod_job: dict[str, str] = {}
        self.clock: tuple[int, int] | None = None
        self.stats: dict[str, Any] = {}
        self.finished = 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line:
                self._row(orjson.loads(line))

    def _row(self, row: list[Any]) -> None:
        if row[0] == "clock":
            self.clock = (row[1], row[2])
            return
        if row[0] == "stats":
            self.stats = row[1]
            return
        stamp, tag, kind = row[0], row[1], row[2]
        if tag == "p":
            pod, job, phase, _deleting = row[3:7]
            if not job:
                return
            self.pod_job[pod] = job
            times = self.jobs[job]
            if phase == "Running":
                times.pod_running.setdefault(pod, stamp)
            elif phase in TERMINAL_PHASES:
                times.pod_terminated.setdefault(pod, stamp)
        elif tag == "u" and self.system == "operator":
            name, state = row[3], row[4]
            if kind == "DELETED":
                return
            times = self.jobs[name]
            if times.created is None:
                times.created = stamp
            if state and state != times.last_state:
                times.transitions.append(stamp)
                times.last_state = state
            if state == "RUNNING" and times.running is None:
                times.running = stamp
            if state in FINAL_STATES and times.final is None:
                times.final = stamp
                times.final_state = state
                self.finished += 1
        elif tag == "j" and self.system == "jobs":
            name, ready, succeeded, complete, active = row[3:8]
            if kind == "DELETED":
                return
            times = self.jobs[name]
            if times.created is None:
                times.created = stamp
            # A Job's transitions in UCloudJob terms: queued (pods active), RUNNING, SUCCESS.
            if not times.transitions and (active or succeeded or complete):
                times.transitions.append(stamp)
            if ready >= self.replicas and times.running is None:
                times.running = stamp
                times.transitions.append(stamp)
            if complete and times.final is None:
                times.final = stamp
                times.final_state = "SUCCESS"
                times.transitions.append(stamp)
                self.finished += 1

    def wall(self, stamp_ns: int) -> float:
        """A monotonic stamp as Unix time (seconds), via the watcher's clock pair."""
        assert self.clock is not None
        return (self.clock[1] + (stamp_ns - self.clock[0])) / 1e9


def analyse(tail: Tail, expected: int, run_seconds: float = 0.0) -> dict[str, Any]:
    running: list[float] = []
    completion_first: list[float] = []
    completion_last: list[float] = []
    missed_running = not_all_pods_running = 0
    transitions: list[int] = []
    created: list[int] = []
    finals: list[int] = []
    final_states: dict[str, int] = defaultdict(int)
    for times in tail.jobs.values():
        if times.created is None:
            continue
        created.append(times.created)
        transitions.extend(times.transitions)
        if len(times.pod_running) >= tail.replicas:
            last_running = max(times.pod_running.values())
            if times.running is not None:
                running.append((times.running - last_running) / 1e9)
            else:
                missed_running += 1
        else:
            not_all_pods_running += 1
        if times.final is not None:
            finals.append(times.final)
            final_states[times.final_state] += 1
            if times.pod_terminated:
                completion_first.append((times.final - min(times.pod_terminated.values())) / 1e9)
                completion_last.append((times.final - max(times.pod_terminated.values())) / 1e9)
    natural = completion_first if tail.system == "operator" else completion_last
    span = (max(finals) - min(created)) / 1e9 if finals and created else None
    tspan = (max(transitions) - min(transitions)) / 1e9 if len(transitions) > 1 else None
    return {
        "jobs_seen": len(created),
        "jobs_expected": expected,
        "finished": len(finals),
        "unfinished": expected - len(finals),
        "final_states": dict(final_states),
        "missed_running": missed_running,
        "not_all_pods_seen_running": not_all_pods_running,
        "latency_seconds": {
            "running": summary(running),
            "completion": summary(natural),
            "completion_from_first_terminated": summary(completion_first),
            "completion_from_last_terminated": summary(completion_last),
        },
        "throughput": {
            "first_create_to_last_final_seconds": round(span, 3) if span else None,
            "jobs_per_second": round(len(finals) / span, 2) if span else None,
            # The replicas' run time is a fixed wait, not work: without it, the rate the
            # pipeline moved jobs through creation, RUNNING and completion.
            "jobs_per_second_net_of_run_time": (
                round(len(finals) / (span - run_seconds), 2)
                if span and span > run_seconds
                else None
            ),
            "transitions": len(transitions),
            "transitions_per_second": round(len(transitions) / tspan, 2) if tspan else None,
            "peak_transitions_per_second_1s": peak_rate([t / 1e9 for t in transitions]),
        },
        "samples": {
            "running": [round(x, 5) for x in running],
            "completion": [round(x, 5) for x in natural],
        },
        "watcher": tail.stats,
    }


def pod_to_job(tail: Tail) -> dict[str, str]:
    return dict(tail.pod_job)
