"""bench/run.py's command line: every knob, with its default (`bench/run.py --help`)."""

from __future__ import annotations

import argparse

from cluster import ROOT


class Settings(argparse.Namespace):
    """The options of parse_args, typed (argparse's own Namespace has no attribute types)."""

    scales: list[int]
    replicas: int
    systems: list[str]
    regimes: list[str]
    configs: list[str]
    lifted_kcm_flags: list[str]
    lifted_scheduler_flags: list[str]
    pace: float | None
    run_seconds: float
    resident: int
    resident_pods: str
    resident_timeout: float
    resident_settle: float
    nodes: int
    node_pods: int
    calibration_levels: list[int]
    calibration_seconds: float
    settle_seconds: float
    idle_seconds: float
    phase_timeout: float | None
    operator_args: list[str]
    workload_api: str
    max_load: float
    load_wait: float
    profile_operator: bool
    cluster_prefix: str
    keep_cluster: bool
    keep_audit: bool
    artifacts: str
    out: str
    label: str


def parse_args(description: str, argv: list[str] | None = None) -> Settings:
    def ints(text: str) -> list[int]:
        return [int(x.replace("_", "")) for x in text.split(",") if x]

    def words(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--scales", type=ints, default=[100, 1000, 5000], help="values of N")
    p.add_argument("--replicas", type=int, default=4, help="R: replicas (pods) per job")
    p.add_argument(
        "--systems",
        type=words,
        default=["operator", "jobs"],
        help="operator (UCloudJobs), jobs (batch/v1 Jobs, kcm's Job controller)",
    )
    p.add_argument(
        "--regimes",
        type=words,
        default=["burst", "paced"],
        help="burst: all N at once; paced: a steady rate (see --pace)",
    )
    p.add_argument(
        "--configs",
        type=words,
        default=["defaults", "lifted"],
        help="kube-controller-manager client limits: defaults, lifted",
    )
    p.add_argument(
        "--lifted-kcm-flags",
        type=words,
        default=["kube-api-qps=5000", "kube-api-burst=10000"],
        help="kcm flags (key=value) of the lifted configuration",
    )
    p.add_argument(
        "--lifted-scheduler-flags",
        type=words,
        default=[],
        help="kube-scheduler flags of the lifted configuration (none: its defaults)",
    )
    p.add_argument(
        "--pace",
        type=float,
        default=None,
        help="paced arrival rate, jobs/s; default: 0.5 x the sustainable rate "
        "min(C / writes per job, 50 binds/s / R), W measured in the burst phase",
    )
    p.add_argument(
        "--run-seconds",
        type=float,
        default=30,
        help="replica run time (KWOK exit-after): Running -> Succeeded",
    )
    p.add_argument(
        "--resident",
        type=int,
        default=10000,
        help="UCloudJobs kept Running for the memory figure (0: skip); run once, "
        "after the largest scale, in the first configuration",
    )
    p.add_argument(
        "--resident-pods",
        choices=("pending", "running"),
        default="pending",
        help="resident replica pods left Pending by KWOK (the operator's index holds them just "
        "the same) or made Running (40,000 status writes more: about an hour on 2 cores)",
    )
    p.add_argument("--resident-timeout", type=float, default=1800)
    p.add_argument("--resident-settle", type=float, default=20)
    p.add_argument("--nodes", type=int, default=20, help="extra KWOK nodes")
    p.add_argument("--node-pods", type=int, default=2500, help="pods capacity of each node")
    p.add_argument("--calibration-levels", type=ints, default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--calibration-seconds", type=float, default=3)
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=3,
        help="wait after the last job is final before the phase ends (audit window)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=3,
        help="the operator's idle CPU is sampled this long before each phase",
    )
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        help="seconds per phase; default 300 + run time + submission + 1.2 s x N",
    )
    p.add_argument(
        "--operator-args",
        type=lambda s: s.split(),
        default=[],
        help="extra operator flags, space-separated",
    )
    p.add_argument(
        "--workload-api",
        choices=("off", "on"),
        default="off",
        help="on: the clusters serve the Workload API (UCLOUD_WORKLOAD_API=1), so the operator's "
        "--gang-admission=auto gives each job of more than one replica a PodGroup; with the jobs "
        "system, kube-controller-manager's Job controller gets its own Workload integration "
        "(feature gate WorkloadWithJob) and, on Kubernetes >= 1.37, the Jobs "
        "spec.scheduling.schedulingPolicy.gang. off: as before (the environment's "
        "UCLOUD_WORKLOAD_API is not used)",
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="scales N >= 1000 wait (up to --load-wait s) for the 1-min load below this",
    )
    p.add_argument("--load-wait", type=float, default=600)
    p.add_argument(
        "--profile-operator",
        action="store_true",
        help="sample the operator with py-spy in every operator phase (perturbs CPU)",
    )
    p.add_argument("--cluster-prefix", default="bench")
    p.add_argument("--keep-cluster", action="store_true")
    p.add_argument("--keep-audit", action="store_true", help="keep the (large) audit logs")
    p.add_argument(
        "--artifacts",
        default=str(ROOT / "artifacts" / "bench"),
        help="logs, watch events, audit logs",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--label", default="", help="a free-text note stored with the results")
    args = p.parse_args(argv, Settings())
    if not args.cluster_prefix.startswith("bench"):
        p.error("--cluster-prefix must start with 'bench'")
    return args
