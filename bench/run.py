"""ucloud-operator benchmark: UCloudJobs against the built-in Job controller, same control plane.

    .venv/bin/python bench/run.py                      # what `make bench` runs
    .venv/bin/python bench/run.py --scales 100         # what `make bench-quick` runs

For each scale N, and each kube-controller-manager configuration (`defaults`: its client limits
as shipped, `lifted`: --kube-api-qps/--kube-api-burst raised), a fresh kwokctl cluster with an
audit log is made; then:

1. calibration: the raw UCloudJob status-PATCH rate C of this API server (bench/calibrate.py);
2. for each system (the operator; batch/v1 Jobs with kube-controller-manager's Job controller)
   and each regime (burst: all N submitted at once; paced: a steady rate, about half what the
   control plane sustains), one phase in a namespace of its own: N jobs of R replicas driven
   IN_QUEUE -> RUNNING -> SUCCESS by KWOK stages (pods Running, then Succeeded after
   --run-seconds), timed by bench/watcher.py, counted by the audit log;
3. last, `--resident` UCloudJobs kept running to measure the operator's memory.

The results go to bench/results/<date>/ (`--out DIR`: DIR/<date>/): <date>.json, a PNG of the
latency distributions and a Markdown table, with DIR/latest.* links to them; bench/README.md
documents every key. Every wait is bounded in time.

This module is the entry point and writes the results; bench/README.md (Files) lists the
modules that do the rest.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis
import report
from options import Settings, parse_args
from procstat import loadavg
from progress import log
from provenance import git_info, machine, versions
from scales import Bench


async def wait_for_load(limit: float, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while loadavg()[0] >= limit:
        if time.monotonic() > deadline:
            return False
        log(f"load {loadavg()[0]:.2f} >= {limit}: waiting")
        await asyncio.sleep(15)
    return True


async def main_async(args: Settings) -> int:
    if not shutil.which("bash"):
        raise SystemExit("bash is needed (hack/cluster.sh)")
    bench = Bench(args)
    out: dict[str, Any] = {
        "schema": 1,
        "date": bench.started.isoformat(timespec="seconds"),
        "label": args.label,
        "machine": machine(),
        "versions": versions(),
        "git": git_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("artifacts", "out")},
        "timing": analysis.__doc__.strip(),
        "scales": [],
        "skipped": [],
    }
    try:
        for n in args.scales:
            if n >= 1000 and not await wait_for_load(args.max_load, args.load_wait):
                log(f"N = {n}: load stayed >= {args.max_load}; skipped")
                out["skipped"].append(
                    {"n": n, "reason": f"1-min load >= {args.max_load}", "loadavg": loadavg()}
                )
                continue
            result: dict[str, Any] = {"n": n, "replicas": args.replicas, "configs": {}}
            out["scales"].append(result)  # filled as its phases end
            await bench.scale(result)
            for cfg in result["configs"].values():
                if "resident" in cfg:
                    out["resident"] = cfg.pop("resident")
            write_results(out, Path(args.out), bench.stamp, partial=True)
    finally:
        out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        out["machine"]["loadavg_end"] = loadavg()
        paths = write_results(out, Path(args.out), bench.stamp, partial=False)
        log("wrote " + ", ".join(str(p) for p in paths))
    return 0


def write_results(out: dict[str, Any], folder: Path, stamp: str, partial: bool) -> list[Path]:
    """Write folder/<stamp>/<stamp>.json (.png, .md), and point folder/latest.* at them."""
    run = folder / stamp
    run.mkdir(parents=True, exist_ok=True)
    dated = run / f"{stamp}.json"
    tmp = run / f"{stamp}.json.tmp"
    tmp.write_text(json.dumps(out, indent=1, default=str) + "\n")
    tmp.replace(dated)
    if partial or not (out["scales"] or out.get("resident")):
        return [dated]  # latest.* only ever point at a run that measured something
    paths = [dated]
    if out["scales"]:
        png = report.plot(out, run / f"{stamp}.png")
        md = run / f"{stamp}.md"
        md.write_text(report.table(out))
        paths += [png, md]
    for path in paths:
        link_latest(folder / f"latest{path.suffix}", path)
    return paths


def link_latest(link: Path, target: Path) -> None:
    """link -> target as a relative symlink, replacing what was there (never writing through an
    old link into the run it pointed at)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.relative_to(link.parent))
    tmp.replace(link)


async def guarded(args: Settings) -> int:
    """SIGTERM/SIGINT cancel the run: its `finally` blocks stop the subprocesses, delete the
    cluster and write what was measured so far."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await main_async(args)
    except asyncio.CancelledError:
        log("interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(guarded(parse_args(__doc__.splitlines()[0], argv)))


if __name__ == "__main__":
    sys.exit(main())
