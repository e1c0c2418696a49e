"""Fixtures of the cluster tiers (tests/integration, tests/reliability): one local control plane
per test run (`hack/cluster.sh up`, or UCLOUD_TEST_KUBECONFIG), one operator process for the
session, one namespace per test. Defined once here so both tiers share the same operator."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.support.binaries import control_plane_bin
from tests.support.cluster import ROOT, Cluster, create_namespace, in_artifacts, kubectl
from tests.support.operator import OperatorProcess
from ucloud_operator.models import GROUP, PLURAL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    given = os.environ.get("UCLOUD_TEST_KUBECONFIG")
    if given:
        return given
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "up"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kubectl_bin(kubeconfig: str) -> str:
    return str(control_plane_bin() / "kubectl")


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def crd_installed(kubectl_bin: str, kubeconfig: str) -> None:
    kubectl(
        kubectl_bin,
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "manifests" / "crd.yaml"),
    )
    kubectl(
        kubectl_bin,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        f"crd/{PLURAL}.{GROUP}",
        "--timeout=30s",
    )


@pytest.fixture(scope="session")
def operator(
    kubeconfig: str, crd_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(kubeconfig, in_artifacts(tmp_path_factory, "operator.log"))
    process.start()
    yield process
    process.kill(signal.SIGTERM)


@pytest.fixture
def killable(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator, for a test that kills it: started again after the test."""
    yield operator
    operator.ensure_running()


@pytest.fixture
def cluster(
    api_client: client.ApiClient, operator: OperatorProcess, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    core = client.CoreV1Api(api_client)
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    create_namespace(core, name)
    yield Cluster(api_client, name, operator)
    core.delete_namespace(name)
