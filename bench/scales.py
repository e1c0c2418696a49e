"""A benchmark run, one scale N at a time: for each kube-controller-manager configuration a fresh
cluster, its calibration, the phases in order (the operator's, then the Job controller's; burst,
then paced), the resident jobs after the last scale, and the audit counts of every phase.

With `--workload-api on` the clusters serve the Workload API; the operator's default
`--gang-admission=auto` then gives every job of more than one replica a PodGroup, and the Job
controller its own gang (feature gate WorkloadWithJob; on Kubernetes >= 1.37 the Jobs ask for it
in spec.scheduling)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import audit
import cluster
import costs
from options import Settings
from pacing import choose_pace, measure_ceiling
from phase import Phase, Target
from progress import log
from resident import resident

WORKLOAD_WITH_JOB = "WorkloadWithJob=true"
JOB_GANG: dict[str, Any] = {"schedulingPolicy": {"gang": {}}}  # minCount defaults to parallelism


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = datetime.now(UTC)
        self.stamp = self.started.strftime("%Y-%m-%dT%H%M%SZ")
        self.artifacts = Path(settings.artifacts) / self.stamp
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.pace_basis: dict[str, Any] | None = None  # of the pace chosen last

    async def scale(self, out: dict[str, Any]) -> None:
        """Both configurations at scale out["n"], written into `out` as each phase ends (an
        interrupted run keeps the phases it finished). The pace the first calibrates serves both."""
        settings = self.settings
        n = out["n"]
        pace: float | None = settings.pace
        workload_api = settings.workload_api == "on"
        gates = WORKLOAD_WITH_JOB if workload_api and "jobs" in settings.systems else ""
        for config in settings.configs:
            extra: dict[str, list[str]] = {}
            if config == "lifted":
                extra["kube-controller-manager"] = settings.lifted_kcm_flags
                if settings.lifted_scheduler_flags:
                    extra["kube-scheduler"] = settings.lifted_scheduler_flags
            cluster_name = f"{settings.cluster_prefix}-{config}"
            audit_log = self.artifacts / f"audit-{n}-{config}.log"
            log(f"cluster {cluster_name} ({config}): starting")
            try:
                kubeconfig = cluster.up(
                    cluster_name,
                    audit_log,
                    extra,
                    self.artifacts / "cluster.log",
                    workload_api=workload_api,
                    extra_gates=gates,
                )
            except (SystemExit, Exception) as error:  # keep the configurations already measured
                log(f"cluster {cluster_name} did not start ({error}); {config} skipped")
                out["configs"][config] = {"error": f"cluster did not start: {error}"}
                continue
            try:
                await cluster.prepare(kubeconfig, settings.nodes, settings.node_pods)
                served = await cluster.served(kubeconfig)
                if workload_api and not served["podgroups_served_in"]:
                    raise SystemExit("--workload-api on, but the API server serves no podgroups")
                # 1.36's Job controller gangs an Indexed Job with completions == parallelism on
                # its own; 1.37's only when spec.scheduling asks for it.
                job_gang = bool(gates) and cluster.kube_minor(served["server_version"]) >= (1, 37)
                target = Target(
                    settings,
                    cluster_name,
                    kubeconfig,
                    self.artifacts,
                    job_scheduling=JOB_GANG if job_gang else None,
                )
                entry: dict[str, Any] = {
                    "cluster": cluster_name,
                    "flags_requested": extra,
                    "component_flags": cluster.component_cmdlines(cluster_name),
                    "nodes": {"count": settings.nodes, "pods_each": settings.node_pods},
                    "workload_api": {
                        "mode": settings.workload_api,
                        "extra_feature_gates": gates,
                        "job_spec_scheduling": target.job_scheduling,
                        **served,
                    },
                }
                out["configs"][config] = entry
                entry["calibration"] = await measure_ceiling(kubeconfig, settings)
                pace = await self.phases(target, entry, n, config, audit_log, pace=pace)
                if config == settings.configs[0] and settings.resident and n == settings.scales[-1]:
                    entry["resident"] = await resident(target)
            finally:
                if not settings.keep_cluster:
                    cluster.down(cluster_name, self.artifacts / "cluster.log")
                if not settings.keep_audit:
                    for path in audit.files(str(audit_log)):
                        with contextlib.suppress(OSError):
                            os.unlink(path)

    async def phases(
        self,
        target: Target,
        entry: dict[str, Any],
        n: int,
        config: str,
        audit_log: Path,
        *,
        pace: float | None,
    ) -> float | None:
        """Every phase of one configuration, each kept in `entry` as it ends; the pace used."""
        settings = self.settings
        ceiling = entry["calibration"]["ceiling_writes_per_second"]
        phases: dict[str, Any] = {}
        entry["phases"] = phases
        done: list[Phase] = []
        try:
            for system in settings.systems:
                for regime in settings.regimes:
                    if regime == "paced" and pace is None:
                        pace, self.pace_basis = choose_pace(
                            ceiling, done, audit_log, settings.replicas
                        )
                    kind = "op" if system == "operator" else "job"
                    phase = Phase(
                        target,
                        f"b{n}-{config[:3]}-{kind}-{regime}",
                        system=system,
                        regime=regime,
                        n=n,
                        pace=pace if regime == "paced" else None,
                    )
                    phases[f"{system}/{regime}"] = await phase.run()
                    done.append(phase)
        except asyncio.CancelledError:
            entry["interrupted"] = f"during phase {len(done) + 1}; later phases not run"
            raise
        finally:
            entry["pace_jobs_per_second"] = pace
            entry["pace_basis"] = self.pace_basis
            if done:  # the audit log goes with the cluster
                costs.add_audit(audit_log, done, ceiling, settings.replicas)
        return pace
