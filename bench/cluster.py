"""The benchmark's control plane: `hack/cluster.sh` with bench settings, plus room for the load.

`hack/cluster.sh up` makes a kwokctl binary-runtime cluster with three small KWOK nodes. For the
benchmark it gets (through UCLOUD_KWOKCTL_ARGS, so hack/ is unchanged) the bench audit policy and
log path and the kube-controller-manager flags of the configuration under test; then this module
adds `--nodes` fake nodes with `--node-pods` pods each (KWOK annotation, label type=kwok, no
taints, no resource requests in the benchmark's pods) and applies the UCloudJob CRD.

The Workload API (`--workload-api`) is off unless asked for (UCLOUD_WORKLOAD_API=0), so runs stay
comparable with those made before hack/cluster.sh turned it on; on, the Job controller's own
Workload integration can be added through UCLOUD_EXTRA_FEATURE_GATES (`WorkloadWithJob=true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from kubeclient import Client

ROOT = Path(__file__).resolve().parents[1]
HACK = ROOT / "hack"
CACHE = Path(
    os.environ.get("UCLOUD_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ucloud-operator"
)
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok-controller",
)


def cluster_dir(name: str) -> Path:
    return CACHE / "kwok" / "clusters" / name


def kwokctl_args(audit_log: Path, extra: dict[str, list[str]]) -> list[str]:
    args = [
        "--kube-audit-policy",
        str(ROOT / "bench" / "audit-policy.yaml"),
        "--extra-args",
        f"kube-apiserver=audit-log-path={audit_log}",
        # The log rotates at 100 MB and keeps every backup; audit.files() reads them all.
        # No second kube-apiserver flag: kwokctl 0.8.0 panics (index out of range) when two
        # components each get more than one --extra-args (it indexes its patches by the flag's
        # position), and the lifted configuration gives kube-controller-manager two.
    ]
    for component, flags in extra.items():
        for flag in flags:
            args += ["--extra-args", f"{component}={flag}"]
    return args


def up(
    name: str,
    audit_log: Path,
    extra: dict[str, list[str]],
    log: Path,
    *,
    workload_api: bool = False,
    extra_gates: str = "",
) -> str:
    """A fresh cluster (any old one of the name is deleted first); returns its kubeconfig.
    `workload_api` decides UCLOUD_WORKLOAD_API (the environment's is not used); `extra_gates`
    (comma-separated) go to hack/cluster.sh as UCLOUD_EXTRA_FEATURE_GATES."""
    assert name.startswith("bench"), "benchmark clusters are named bench*"
    down(name, log)
    audit_log.parent.mkdir(parents=True, exist_ok=True)
    for word in [str(audit_log), str(ROOT)]:
        if any(c.isspace() for c in word):
            raise SystemExit(f"paths with spaces are not supported by UCLOUD_KWOKCTL_ARGS: {word}")
    env = {
        **os.environ,
        # The Workload API off unless asked for: the runs stay comparable with those made before
        # hack/cluster.sh turned it on.
        "UCLOUD_WORKLOAD_API": "1" if workload_api else "0",
        "UCLOUD_EXTRA_FEATURE_GATES": extra_gates,
        "UCLOUD_CLUSTER": name,
        "UCLOUD_KWOKCTL_ARGS": " ".join(kwokctl_args(audit_log, extra)),
    }
    env.pop("UCLOUD_AUDIT_LOG", None)
    env.pop("UCLOUD_NO_QPS_LIMITS", None)
    with log.open("ab") as out:
        result = subprocess.run(
            ["bash", str(HACK / "cluster.sh"), "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise SystemExit(f"hack/cluster.sh up failed for {name}; see {log}")
    return result.stdout.decode().strip().splitlines()[-1]


def down(name: str, log: Path) -> None:
    assert name.startswith("bench")
    if not cluster_dir(name).exists():
        return
    env = {**os.environ, "UCLOUD_CLUSTER": name}
    with log.open("ab") as out:
        subprocess.run(
            ["bash", str(HACK / "cluster.sh"), "down"],
            env=env,
            stdout=out,
            stderr=out,
            timeout=300,
            check=False,
        )


def component_pids(name: str) -> dict[str, int]:
    pids = {}
    for component in COMPONENTS:
        path = cluster_dir(name) / "pids" / f"{component}.pid"
        with contextlib.suppress(OSError, ValueError):
            pids[component] = int(path.read_text().strip())
    return pids


def component_cmdlines(name: str) -> dict[str, str]:
    out = {}
    for component, pid in component_pids(name).items():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        args = [a for a in raw.decode().split("\0") if a]
        # Only the flags that shape performance; paths and ports are noise.
        out[component] = (
            " ".join(
                a
                for a in args[1:]
                if a.startswith(
                    (
                        "--kube-api-",
                        "--max-",
                        "--enable-priority",
                        "--concurrent-",
                        "--audit-log-path",
                        "--node-lease",
                        "--feature-gates",
                        "--runtime-config",
                    )
                )
            )
            or "(defaults)"
        )
    return out


def kube_versions() -> dict[str, str]:
    """KUBE_VERSION and ETCD_VERSION as hack/cluster.sh sees them: hack/versions.env's, or the
    environment's KUBE_VERSION (and the etcd that goes with its minor)."""
    out = subprocess.run(
        ["bash", "-c", 'source hack/versions.env && echo "$KUBE_VERSION $ETCD_VERSION"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    return {"kube_version": out[0], "etcd_version": out[1]} if len(out) == 2 else {}


async def served(kubeconfig: str) -> dict[str, Any]:
    """What the API server says it is, and which scheduling.k8s.io versions serve podgroups."""
    async with Client(kubeconfig, "setup", pool=2) as client:
        version = await client.get_json("/version")
        group = await client.get_json("/apis/scheduling.k8s.io")
        podgroups = []
        for entry in group.get("versions") or []:
            listing = await client.get_json(f"/apis/{entry['groupVersion']}")
            if any(r.get("name") == "podgroups" for r in listing.get("resources") or []):
                podgroups.append(entry["groupVersion"])
    return {"server_version": version.get("gitVersion"), "podgroups_served_in": podgroups}


def kube_minor(server_version: str | None) -> tuple[int, int]:
    """(1, 37) from "v1.37.2"; (0, 0) when unreadable."""
    parts = (server_version or "").lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def node(name: str, pods: int) -> dict[str, Any]:
    capacity = {"cpu": "1k", "memory": "4Ti", "pods": str(pods)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def node_names(count: int) -> list[str]:
    return [f"bench-node-{i}" for i in range(count)]


async def prepare(kubeconfig: str, nodes: int, node_pods: int) -> None:
    """Add the bench nodes and the CRD; wait until both are usable (bounded)."""
    async with Client(kubeconfig, "setup", pool=8) as client:
        for name in node_names(nodes):
            await client.request("POST", "/api/v1/nodes", node(name, node_pods), ok=(201, 409))
        crd = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
        await client.request(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, ok=(201, 409)
        )
        deadline = time.monotonic() + 120
        while True:
            listing = await client.get_json("/api/v1/nodes", {"labelSelector": "type=kwok"})
            ready = sum(
                1
                for item in listing["items"]
                if item["metadata"]["name"].startswith("bench-node-")
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in item.get("status", {}).get("conditions") or []
                )
            )
            got = await client.get_json(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ucloudjobs.ucloud.dk"
            )
            established = any(
                c["type"] == "Established" and c["status"] == "True"
                for c in got.get("status", {}).get("conditions") or []
            )
            if ready >= nodes and established:
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"bench nodes not Ready ({ready}/{nodes}) or CRD not "
                    f"established ({established}) after 120 s"
                )
            await asyncio.sleep(0.5)
