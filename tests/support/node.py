"""The real node of `make test-node` (`hack/node.sh`): `ucloud-real`, beside the KWOK nodes,
tainted so that only pods which tolerate it run there. Every job of that tier is pinned to it
with `on_real_node`."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.support.cluster import ROOT

REAL_NODE = "ucloud-real"
# Longer than the other tiers' 3 s: a real kubelet takes a second or two to report a failing pull,
# and the job must be seen IN_QUEUE (ImagePulling) before the grace ends it.
IMAGE_PULL_GRACE = 15


def _versions() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


TEST_IMAGE = _versions()["TEST_IMAGE"]
# Named on a loopback registry address that refuses: never pullable, never leaves the machine.
ABSENT_IMAGE = "127.0.0.1:5999/absent:1"


def on_real_node(*containers: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    """A pod spec that runs on the real node, with the test image unless a container names one."""
    return {
        "nodeSelector": {"ucloud.dk/node": "real"},
        "tolerations": [
            {"key": "ucloud.dk/real-node", "operator": "Exists", "effect": "NoSchedule"}
        ],
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": TEST_IMAGE, **c} for c in containers],
        **pod_spec,
    }


def shell(script: str, **container: Any) -> dict[str, Any]:
    return {"command": ["sh", "-c", script], **container}


def node_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "hack" / "node.sh"), *args], check=True, capture_output=True, text=True
    )
