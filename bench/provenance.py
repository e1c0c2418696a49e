"""What a run ran on, stored with its results: the machine, the versions, the git commit, and
which operator code each phase ran."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from cluster import ROOT, kube_versions
from procstat import loadavg


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        mem = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": loadavg(),
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
            m = re.match(r"^([A-Z_]+)=(\S+)", line)
            if m and not m.group(1).endswith("_IMAGE"):  # the real node's; the bench uses none
                out[m.group(1).lower()] = m.group(2)
    out.update(kube_versions())  # the environment's KUBE_VERSION, as hack/cluster.sh takes it
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for pkg in ("kopf", "kubernetes", "aiohttp", "pydantic"):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def operator_source() -> dict[str, Any]:
    """Which operator code a phase ran: the tree under operator/ is edited while benchmarks run,
    so each phase records a digest of its sources, and whether they differ from HEAD."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "operator").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "operator"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    return {
        "sha256": digest.hexdigest()[:16],
        "uncommitted": sorted(line[3:] for line in dirty if line.strip()),
    }


def git_info() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        return subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": run("git", "rev-parse", "HEAD"),
        "operator_dirty": bool(run("git", "status", "--porcelain", "--", "operator")),
    }
