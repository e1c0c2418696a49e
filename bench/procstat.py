"""CPU seconds and memory of processes, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (its threads included), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS over the process' life) in KiB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


@dataclass
class Tracked:
    """CPU seconds used between `start()` and `stop()`, and the peak RSS sampled meanwhile."""

    pid: int
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss_kib: int = 0
    hwm_kib: int = 0

    def start(self) -> None:
        self.cpu_start = cpu_seconds(self.pid) or 0.0
        self.cpu_end = self.cpu_start
        self.sample()

    def sample(self) -> None:
        mem = memory_kib(self.pid)
        self.peak_rss_kib = max(self.peak_rss_kib, mem.get("VmRSS", 0))
        self.hwm_kib = max(self.hwm_kib, mem.get("VmHWM", 0))
        cpu = cpu_seconds(self.pid)
        if cpu is not None:
            self.cpu_end = cpu

    def stop(self) -> dict[str, float]:
        self.sample()
        return {
            "cpu_seconds": round(self.cpu_end - self.cpu_start, 3),
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
            "vm_hwm_mib": round(self.hwm_kib / 1024, 1),
        }


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]
