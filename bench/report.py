"""The plot and the Markdown table of a results file.

.venv/bin/python bench/report.py bench/results/latest.json   # re-draw the latest run's PNG and .md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SERIES_STYLE = {
    # (system, config): colour
    ("operator", "defaults"): "#1f77b4",
    ("operator", "lifted"): "#17becf",
    ("job-controller", "defaults"): "#d62728",
    ("job-controller", "lifted"): "#ff7f0e",
}


def _series(scale: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for config, entry in scale["configs"].items():
        for phase in entry.get("phases", {}).values():
            yield config, phase


def plot(out: dict[str, Any], path: Path) -> Path:
    import matplotlib  # noqa: PLC0415 - only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    scales = out["scales"]
    fig, axes = plt.subplots(len(scales), 2, figsize=(13, 4.2 * len(scales)), squeeze=False)
    for row, scale in enumerate(scales):
        for col, (key, title) in enumerate(
            (("running", "RUNNING latency"), ("completion", "completion latency"))
        ):
            ax = axes[row][col]
            for config, phase in _series(scale):
                values = sorted(max(v, 1e-4) for v in phase["samples"][key])
                if not values:
                    continue
                ys = [(i + 1) / len(values) for i in range(len(values))]
                lat = phase["latency_seconds"][key]
                label = (
                    f"{phase['system']} ({config}), {phase['regime']}: "
                    f"p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms"
                )
                missing = phase["jobs_expected"] - len(values)
                if missing:
                    label += f", {missing} not measured"
                ax.step(
                    values,
                    ys,
                    where="post",
                    label=label,
                    color=SERIES_STYLE.get((phase["system"], config), "grey"),
                    linestyle="-" if phase["regime"] == "burst" else "--",
                )
            ax.set_xscale("log")
            ax.set_xlim(1e-3, None)
            ax.set_ylim(0, 1.01)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("seconds (watch-event receive times; log scale)")
            ax.set_ylabel("fraction of jobs")
            ax.set_title(f"N = {scale['n']} x R = {scale['replicas']}: {title}")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "ucloud-operator vs the Job controller (kcm): cumulative latency distributions; "
        "solid = burst, dashed = paced",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def table(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"Benchmark of {out['date']} on {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}; load at start {m['loadavg']}; "
        f"Kubernetes {out['versions'].get('kube_version')}, "
        f"kwok {out['versions'].get('kwok_version')}, kopf {out['versions'].get('kopf')}. "
        f"Replica run time {out['settings']['run_seconds']:g} s. "
        "Latencies in ms from watch-event receive times (audit-log cross-check in the JSON).",
        "",
    ]
    for scale in out["scales"]:
        for config, entry in scale["configs"].items():
            if "error" in entry or not entry.get("phases"):
                why = entry.get("error") or entry.get("interrupted") or "no phase finished"
                lines.append(f"**N = {scale['n']}, kcm {config}:** not measured: {why}")
                lines.append("")
                continue
            cal = entry["calibration"]
            flags = entry["component_flags"].get("kube-controller-manager", "(defaults)")
            pace = entry.get("pace_jobs_per_second")
            wl = entry.get("workload_api") or {}
            lines.append(
                f"**N = {scale['n']}, R = {scale['replicas']}, kcm {config}** "
                f"(kube-controller-manager: `{flags}`): C = "
                f"{cal['ceiling_writes_per_second']:.0f} status patches/s; "
                + (f"paced at {pace} jobs/s" if pace else "no paced phase")
                + _workload_api_note(wl)
            )
            lines.append("")
            lines.append(
                "| system | regime | done | RUNNING p50 / p95 / p99 / max | "
                "completion p50 / p95 / p99 / max | jobs/s | transitions/s "
                "(peak) | % of bound | writes/job: own (min) / all | CPU ms/job | "
                "peak RSS MiB | stall ms: in loop / outside |"
            )
            lines.append("|" + "---|" * 12)
            for phase in entry.get("phases", {}).values():
                r, c = phase["latency_seconds"]["running"], phase["latency_seconds"]["completion"]
                tp = phase["throughput"]
                api = phase.get("api", {})
                own = api.get("operator_writes_per_job", api.get("job_controller_writes_per_job"))
                minimum = api.get("operator_minimum_writes_per_job")
                bound = phase.get("pipeline_bound", {})
                proc = phase["processes"].get("operator") or {}
                stall = (phase.get("operator") or {}).get("event_loop_stall", {})
                frac = bound.get("achieved_fraction")
                lines.append(
                    f"| {phase['system']} | {phase['regime']} | {phase['finished']}/"
                    f"{phase['jobs_expected']}"
                    f"{f' ({missed} never RUNNING)' if (missed := phase['missed_running']) else ''}"
                    f" | {_ms(r['p50'])} / {_ms(r['p95'])} / "
                    f"{_ms(r['p99'])} / {_ms(r['max'])} | {_ms(c['p50'])} / {_ms(c['p95'])} / "
                    f"{_ms(c['p99'])} / {_ms(c['max'])} | {tp['jobs_per_second']} | "
                    f"{tp['transitions_per_second']} ({tp['peak_transitions_per_second_1s']}) | "
                    f"{'-' if frac is None else f'{frac * 100:.0f} %'} | "
                    f"{own if own is not None else '-'}"
                    f"{f' ({minimum:g})' if minimum is not None else ''} / "
                    f"{api.get('writes_per_job_all_clients', '-')}"
                    f"{'' if api.get('audit_complete', True) else ' (audit cut short)'} | "
                    f"{proc.get('cpu_ms_per_job', '-')} | {proc.get('vm_hwm_mib', '-')} | "
                    f"{_ms(_loop_lag(stall.get('operator_metrics')))} / "
                    f"{_ms(stall.get('max_stall_upper_bound_seconds'))} |"
                )
            if entry.get("interrupted"):
                lines += ["", f"Interrupted {entry['interrupted']}."]
            lines.append("")
    res = out.get("resident")
    if res:
        op = res.get("operator", {})
        lines.append(
            f"**Resident:** {res.get('running')}/{res['jobs']} UCloudJobs x {res['replicas']} "
            f"replicas {res.get('resident_state', 'RUNNING')} (pods "
            f"{res.get('pods', 'running')}): operator peak RSS (VmHWM) {op.get('vm_hwm_mib')} MiB, "
            f"longest event-loop stall {_ms(_loop_lag(op.get('metrics')))} ms "
            f"in the loop, <= "
            f"{_ms((res.get('event_loop_stall') or {}).get('max_stall_upper_bound_seconds'))} ms "
            f"from outside."
        )
        lines.append("")
    for skipped in out.get("skipped", []):
        lines.append(f"Skipped N = {skipped['n']}: {skipped['reason']}.")
    return "\n".join(lines) + "\n"


def _workload_api_note(wl: dict[str, Any]) -> str:
    """The Workload API's mode of a configuration (runs before it have none: off)."""
    if not wl:
        return ""
    if wl.get("mode") != "on":
        return "; Workload API off"
    served = ", ".join(wl.get("podgroups_served_in") or []) or "none"
    note = f"; Workload API on (podgroups: {served})"
    if wl.get("extra_feature_gates"):
        note += f", kcm gates `{wl['extra_feature_gates']}`"
    if wl.get("job_spec_scheduling"):
        note += f", Jobs' spec.scheduling `{json.dumps(wl['job_spec_scheduling'])}`"
    return note


def _loop_lag(metrics: dict[str, Any] | None) -> float | None:
    """The operator's own longest event-loop lag (from its /metrics), when the run recorded it."""
    value = (metrics or {}).get("ucloud_event_loop_lag_max_seconds")
    return float(value) if value is not None else None


def main() -> int:
    default = Path(__file__).parent / "results" / "latest.json"
    path = (Path(sys.argv[1]) if len(sys.argv) > 1 else default).resolve()  # latest.* are links
    out = json.loads(path.read_text())
    png = plot(out, path.with_suffix(".png"))
    md = path.with_suffix(".md")
    md.write_text(table(out))
    print(png, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
