"""The real-node tier: replicas run as real containers on the kubelet of `hack/node.sh`.

The cluster is the local control plane with UCLOUD_REAL_NODE=1 (`make test-node` sets it): the
KWOK nodes plus one real node, `ucloud-real`, tainted so that only pods which tolerate it run
there. Every job of this tier is pinned to it with `on_real_node`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ROOT, OperatorProcess

REAL_NODE = "ucloud-real"
NODE_LOST_GRACE = 5  # seconds: the operator's node-lost grace in this tier


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


TEST_IMAGE = _versions()["TEST_IMAGE"]
# Named on a loopback registry address that refuses: never pullable, never leaves the machine.
ABSENT_IMAGE = "127.0.0.1:5999/absent:1"


def on_real_node(*containers: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    """A pod spec that runs on the real node, with the test image unless a container names one."""
    return {
        "nodeSelector": {"ucloud.dk/node": "real"},
        "tolerations": [{"key": "ucloud.dk/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": TEST_IMAGE, **c} for c in containers],
        **pod_spec,
    }


def shell(script: str, **container: Any) -> dict[str, Any]:
    return {"command": ["sh", "-c", script], **container}


@pytest.fixture(scope="session", autouse=True)
def _real_node_cluster() -> None:
    if os.environ.get("UCLOUD_REAL_NODE") != "1":
        pytest.fail("tests/node needs UCLOUD_REAL_NODE=1 (make test-node sets it)", pytrace=False)


@pytest.fixture(scope="session")
def operator(kubeconfig: str, crd_installed: None, tmp_path_factory: pytest.TempPathFactory) -> (
    Iterator[OperatorProcess]
):
    artifacts = Path(os.environ.get("UCLOUD_ARTIFACTS", tmp_path_factory.mktemp("operator")))
    artifacts.mkdir(parents=True, exist_ok=True)
    process = OperatorProcess(kubeconfig, artifacts / "operator-node.log",
                              extra_args=("--node-lost-grace", str(NODE_LOST_GRACE)))
    process.start()
    yield process
    process.kill(signal.SIGTERM)


def node_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "hack" / "node.sh"), *args], check=True,
                          capture_output=True, text=True)
