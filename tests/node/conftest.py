"""The real-node tier: replicas run as real containers on the kubelet of `hack/node.sh`.

The cluster is the local control plane with UCLOUD_REAL_NODE=1 (`make test-node` sets it): the
KWOK nodes plus one real node, `ucloud-real`, tainted so that only pods which tolerate it run
there. Every job of this tier is pinned to it with `tests.support.node.on_real_node`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch

from tests.support.cluster import in_artifacts
from tests.support.node import IMAGE_PULL_GRACE, REAL_NODE
from tests.support.operator import OperatorProcess


@pytest.fixture(scope="session", autouse=True)
def _real_node_cluster() -> None:
    if os.environ.get("UCLOUD_REAL_NODE") != "1":
        pytest.fail("tests/node needs UCLOUD_REAL_NODE=1 (make test-node sets it)", pytrace=False)


@pytest.fixture(scope="session")
def operator(
    kubeconfig: str, crd_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        kubeconfig,
        in_artifacts(tmp_path_factory, "operator-node.log"),
        extra_args=("--image-pull-grace", str(IMAGE_PULL_GRACE)),
    )
    process.start()
    yield process
    process.kill(signal.SIGTERM)


@pytest.fixture(scope="session", autouse=True)
def pod_status_record(
    api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Every status the real kubelet writes to a pod on the real node, one JSON line each, in
    $UCLOUD_ARTIFACTS/real-node-pods.jsonl: the ground truth docs/real-node.md tabulates."""
    path = in_artifacts(tmp_path_factory, "real-node-pods.jsonl")
    stop = threading.Event()

    def record() -> None:
        core = client.CoreV1Api(api_client)
        with path.open("w") as out:
            while not stop.is_set():
                stream = watch.Watch().stream(
                    core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={REAL_NODE}",
                    timeout_seconds=5,
                    _request_timeout=10,
                )
                try:
                    for event in stream:
                        pod = event["object"]
                        name = f"{pod.metadata.namespace}/{pod.metadata.name}"
                        status = api_client.sanitize_for_serialization(pod.status)
                        out.write(
                            json.dumps({"type": event["type"], "pod": name, "status": status})
                            + "\n"
                        )
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
