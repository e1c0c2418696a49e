"""On a cluster that does not serve the Workload API (`UCLOUD_WORKLOAD_API=0 hack/cluster.sh up`,
as `make test-without-workload-api` starts it): `auto` runs gangs as the operator always did,
and `on` refuses to start, saying what to switch on.

Run beside tests/integration/test_rules.py on the same cluster: the rules behave as before."""

from __future__ import annotations

import re

import pytest

from tests.support.cluster import Cluster, busybox, in_artifacts, served_pod_group_version
from tests.support.operator import OperatorProcess
from tests.support.poll import poll
from ucloud_operator.models import JobState, Reason


@pytest.fixture(scope="module", autouse=True)
def no_workload_api(kubectl_bin: str, kubeconfig: str) -> None:
    served = served_pod_group_version(kubectl_bin, kubeconfig)
    assert served is None, f"this cluster serves podgroups ({served}): UCLOUD_WORKLOAD_API=0"


def test_auto_runs_gangs_as_before(cluster: Cluster, operator: OperatorProcess) -> None:
    operator.wait_for_log(re.escape("gang admission: off (--gang-admission=auto)"), since=0)
    assert operator.scrape().value("ucloud_gang_admission", mode="auto", version="") == 0
    cluster.create_job("gang", replicas=3)
    status = cluster.wait_for_state("gang", JobState.RUNNING)
    assert status["runningReplicas"] == 3
    assert all(p.spec.scheduling_group is None for p in cluster.pods("gang"))
    assert [s.metadata.name for s in cluster.services("gang")] == ["gang"]


def test_auto_binds_what_fits_as_before(cluster: Cluster) -> None:
    # Four replicas of 3 cpu on three nodes of 4: three are bound and run, one waits.
    cluster.create_job("wide", replicas=4, pod_spec=busybox(resources={"requests": {"cpu": "3"}}))
    try:
        status = cluster.wait_for_state("wide", JobState.IN_QUEUE, Reason.UNSCHEDULABLE)
        cluster.wait_for(
            "wide",
            "three replicas running",
            lambda: cluster.status("wide").get("runningReplicas") == 3,
        )
        assert "Insufficient cpu" in status["message"]
    finally:
        cluster.delete_job("wide")
        cluster.wait_for("wide", "its pods gone", lambda: not cluster.pods("wide"), timeout=60)


def test_on_refuses_to_start_and_says_what_to_switch_on(
    kubeconfig: str, crd_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    refused = OperatorProcess(
        kubeconfig,
        in_artifacts(tmp_path_factory, "operator-gang-on.log"),
        extra_args=("--gang-admission=on", "--lease-name=ucloud-gang-on"),
    )
    refused.start()
    assert refused.process is not None
    code = poll("the operator to exit", refused.process.poll, refused.log_tail, 60)
    assert code != 0
    log = refused.log.read_text()
    assert "--gang-admission=on, but the API server serves no podgroups" in log
    assert "--runtime-config=scheduling.k8s.io/v1beta1=true" in log
