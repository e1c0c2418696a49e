"""End-to-end tests: an installed operator, seen from outside, on whatever KUBECONFIG points at.

They run only when UCLOUD_E2E=1, as hack/e2e-local.sh (local control plane, KWOK nodes) and
hack/e2e-kind.sh (kind, the real image) set it; `make test` skips them. The operator is not
started here: it is whatever the script installed or started.

Environment:
  UCLOUD_E2E=1                 run the tests (else they are skipped)
  KUBECONFIG                   the cluster, as a user who may create UCloudJobs and read pods/events
  UCLOUD_E2E_NAMESPACE         namespace for the test jobs (must be watched by the operator);
                               unset: a fresh namespace per session, deleted afterwards
  UCLOUD_E2E_METRICS_URL       the operator's /metrics URL (metrics checks skipped when unset)
  UCLOUD_E2E_HEALTH_URL        base URL of /healthz and /readyz (the e2e scripts always give it)
  UCLOUD_E2E_OPERATOR_LOG      a file with the operator's log; its tail is printed on failure
  UCLOUD_E2E_TIMEOUT           seconds one wait may take (default 60; kind pulls images: more)

Replica pods are told what to do twice: KWOK reads the ucloud.dk/test-* annotations
(hack/kwok-stages.yaml) and ignores the command; a real kubelet runs the busybox command and
ignores the annotations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.support.cluster import Cluster, create_namespace
from tests.support.operator import Operator


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without an installed operator (UCLOUD_E2E=1, set by hack/e2e-local.sh and hack/e2e-kind.sh)
    # these tests are not collected at all, rather than collected and skipped.
    if os.environ.get("UCLOUD_E2E") == "1":
        return
    ours = [item for item in items if "tests/e2e" in str(item.fspath)]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item not in ours]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
    )
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def operator() -> Operator:
    """The installed operator: its log, /metrics and probes, as the script gives them."""
    log = os.environ.get("UCLOUD_E2E_OPERATOR_LOG")
    return Operator(
        Path(log) if log else None,
        os.environ.get("UCLOUD_E2E_METRICS_URL"),
        os.environ.get("UCLOUD_E2E_HEALTH_URL"),
    )


@pytest.fixture(scope="session")
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    given = os.environ.get("UCLOUD_E2E_NAMESPACE")
    if given:
        yield given
        return
    core = client.CoreV1Api(api_client)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    create_namespace(core, name)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def cluster(api_client: client.ApiClient, namespace: str, operator: Operator) -> Cluster:
    return Cluster(
        api_client, namespace, operator, timeout=float(os.environ.get("UCLOUD_E2E_TIMEOUT", "60"))
    )


@pytest.fixture
def job_name(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[str]:
    """A unique job name; the job is deleted after the test unless it failed (for inspection)."""
    name = f"{request.node.name[5:25].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is None or report.passed:
        cluster.delete_job(name, missing_ok=True)
