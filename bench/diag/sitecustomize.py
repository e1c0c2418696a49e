"""Diagnostics for a benchmark's operator process, loaded by Python at start-up when this folder
is on PYTHONPATH: `UCLOUD_PROBE_DIAG=<folder>` makes bench/mem_probe.py and bench/cpu_probe.py put
it there for their operator only (`processes.diagnose_operators`). Nothing here is part of the
operator.

- UCLOUD_DIAG_SLOW=<seconds>: every event-loop callback (a task step) that runs longer is written
  to stderr with its duration and what it ran: the source of a loop stall.
- UCLOUD_DIAG_GC=1: garbage-collector pauses over 20 ms are written to stderr.
  These two give the wall time and the thread's CPU time: on a shared machine the difference is
  the time the thread waited for a core.
- UCLOUD_DIAG_GC_THRESHOLD=a,b,c: gc.set_threshold(a, b, c), to try other collector settings.
- UCLOUD_DIAG_TYPES=<file>: SIGUSR1 appends the count and shallow size of live GC-tracked
  objects by type to the file (cheap until asked, unlike tracemalloc).
- UCLOUD_DIAG_TRACEMALLOC=<file>: tracemalloc runs (slow: it doubles the CPU); SIGUSR2 appends
  the top allocation sites to the file.
"""

from __future__ import annotations

import asyncio.events
import gc
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter


def _install_slow_callbacks(threshold: float) -> None:
    original = asyncio.events.Handle._run

    def timed(self: asyncio.events.Handle) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        original(self)
        took = time.perf_counter() - started
        if took > threshold:
            cpu_ms = (time.thread_time() - cpu) * 1000
            sys.stderr.write(
                f"DIAG slow-callback {took * 1000:.0f} ms cpu={cpu_ms:.0f} ms {_what(self)}\n"
            )

    def _what(handle: asyncio.events.Handle) -> str:
        task = getattr(getattr(handle, "_callback", None), "__self__", None)  # a task step
        if isinstance(task, asyncio.Task):
            coro = task.get_coro()
            return f"task {task.get_name()!r} {getattr(coro, '__qualname__', coro)}"
        return repr(handle)[:300]

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]


def _install_gc_timer() -> None:
    started: list[float] = [0.0, 0.0]  # wall, thread CPU

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
            return
        took = time.perf_counter() - started[0]
        if took > 0.02:
            cpu_ms = (time.thread_time() - started[1]) * 1000
            sys.stderr.write(
                f"DIAG gc generation={info['generation']} {took * 1000:.0f} ms cpu={cpu_ms:.0f} ms "
                f"collected={info['collected']} objects={len(gc.get_objects())}\n"
            )

    gc.callbacks.append(callback)


def _install_tracemalloc(path: str) -> None:
    tracemalloc.start(4)

    def dump(signum: int, frame: object) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        with open(path, "a") as out:
            current, peak = tracemalloc.get_traced_memory()
            out.write(
                f"== {time.strftime('%H:%M:%S')} traced {current >> 20} MiB peak {peak >> 20} MiB\n"
            )
            for stat in snapshot.statistics("lineno")[:40]:
                out.write(f"{stat}\n")
            out.write("-- by traceback\n")
            for stat in snapshot.statistics("traceback")[:15]:
                out.write(f"{stat.size >> 10} KiB in {stat.count} blocks\n")
                for line in stat.traceback.format()[-8:]:
                    out.write(f"    {line}\n")

    signal.signal(signal.SIGUSR2, dump)


def _install_type_counts(path: str) -> None:
    def dump(signum: int, frame: object) -> None:
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for obj in gc.get_objects():
            kind = type(obj).__qualname__
            counts[kind] += 1
            sizes[kind] += sys.getsizeof(obj)
        with open(path, "a") as out:
            total = sum(counts.values())
            out.write(f"== {time.strftime('%H:%M:%S')} {total} tracked objects\n")
            for kind, size in sizes.most_common(40):
                out.write(f"{size >> 10:>10} KiB {counts[kind]:>9}  {kind}\n")

    signal.signal(signal.SIGUSR1, dump)


if os.environ.get("UCLOUD_DIAG_SLOW"):
    _install_slow_callbacks(float(os.environ["UCLOUD_DIAG_SLOW"]))
if os.environ.get("UCLOUD_DIAG_GC_THRESHOLD"):
    gc.set_threshold(*(int(part) for part in os.environ["UCLOUD_DIAG_GC_THRESHOLD"].split(",")))
if os.environ.get("UCLOUD_DIAG_GC"):
    _install_gc_timer()
if os.environ.get("UCLOUD_DIAG_TYPES"):
    _install_type_counts(os.environ["UCLOUD_DIAG_TYPES"])
if os.environ.get("UCLOUD_DIAG_TRACEMALLOC"):
    _install_tracemalloc(os.environ["UCLOUD_DIAG_TRACEMALLOC"])
