"""Recount the API requests of a finished run from its artifacts (audit logs and watch events).

    .venv/bin/python bench/reaudit.py bench/results/<date>/<date>.json artifacts/bench/<date>

For runs whose audit log rotated (before the driver raised the rotation size) or whose counting
must be redone: reads every audit file of each cluster (rotated backups included), rebuilds the
pod -> job map from each phase's events.jsonl, recomputes `api` and `pipeline_bound` of every
phase in place, and re-draws the table and the plot. A phase whose audit files end before the
phase did (a backup was deleted) is marked `api.audit_complete: false`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis
import audit
import report
from costs import attach_audit
from progress import log


def main() -> int:
    results, artifacts = Path(sys.argv[1]), Path(sys.argv[2])
    out = json.loads(results.read_text())
    settle = out["settings"].get("settle_seconds", 3)
    for scale in out["scales"]:
        for config, entry in scale["configs"].items():
            items = []
            for phase in entry.get("phases", {}).values():
                system = "operator" if phase["system"] == "operator" else "jobs"
                tail = analysis.Tail(
                    str(artifacts / phase["namespace"] / "events.jsonl"), system, phase["replicas"]
                )
                tail.poll()
                end = phase.get("end_unix")
                if end is None:  # older results: the last final event, plus the settle time
                    last = max(t.final for t in tail.jobs.values() if t.final is not None)
                    end = tail.wall(last) + settle
                items.append((phase, phase["namespace"], end, analysis.pod_to_job(tail)))
            files = audit.files(str(artifacts / f"audit-{scale['n']}-{config}.log"))
            if not files or not items:
                log(f"N = {scale['n']} {config}: no audit files, skipped")
                continue
            ceiling = entry["calibration"]["ceiling_writes_per_second"]
            attach_audit(files, items, ceiling, scale["replicas"])
    out.setdefault("notes", []).append(
        "api and pipeline_bound recounted by bench/reaudit.py from the rotated audit files"
    )
    results.write_text(json.dumps(out, indent=1, default=str) + "\n")
    results.with_suffix(".md").write_text(report.table(out))
    report.plot(out, results.with_suffix(".png"))
    print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
