"""The real-node tier: replicas run as real containers on the kubelet of `hack/node.sh`.

The cluster is the local control plane with UCLOUD_REAL_NODE=1 (`make test-node` sets it): the
KWOK nodes plus one real node, `ucloud-real`, tainted so that only pods which tolerate it run
there. Every job of this tier is pinned to it with `on_real_node`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from tests.cluster import ROOT, OperatorProcess

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
                              extra_args=("--image-pull-grace", str(IMAGE_PULL_GRACE)))
    process.start()
    yield process
    process.kill(signal.SIGTERM)


def node_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "hack" / "node.sh"), *args], check=True,
                          capture_output=True, text=True)


@pytest.fixture(scope="session", autouse=True)
def pod_status_record(api_client: client.ApiClient,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every status the real kubelet writes to a pod on the real node, one JSON line each, in
    $UCLOUD_ARTIFACTS/real-node-pods.jsonl: the ground truth docs/real-node.md tabulates."""
    artifacts = Path(os.environ.get("UCLOUD_ARTIFACTS", tmp_path_factory.mktemp("record")))
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / "real-node-pods.jsonl"
    stop = threading.Event()

    def record() -> None:
        core = client.CoreV1Api(api_client)
        with path.open("w") as out:
            while not stop.is_set():
                stream = watch.Watch().stream(
                    core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={REAL_NODE}",
                    timeout_seconds=5, _request_timeout=10)
                try:
                    for event in stream:
                        pod = event["object"]
                        name = f"{pod.metadata.namespace}/{pod.metadata.name}"
                        status = api_client.sanitize_for_serialization(pod.status)
                        out.write(json.dumps(
                            {"type": event["type"], "pod": name, "status": status}) + "\n")
                        out.flush()
                        if stop.is_set():
                            return
                except Exception:  # a dropped watch: list and watch again
                    continue

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(timeout=15)
