"""--metrics-secure on the real API server: /metrics over HTTPS, for ServiceAccount tokens
that a TokenReview authenticates and a SubjectAccessReview allows to get /metrics (the chart's
`<release>-metrics-reader` ClusterRole); 403 for one not bound to it, 401 without a token.

A second operator process runs beside the session's, with --metrics-secure, watching only this
test's (empty) namespace and without leader election, so it acts on nothing of the others'. It
runs with the cluster's admin kubeconfig, which may create the two reviews."""

from __future__ import annotations

import signal
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import Cluster, in_artifacts
from tests.support.operator import OperatorProcess
from tests.support.poll import poll
from tests.unit.charts import helm_binary, named, renderer

TOKEN_SECONDS = 600  # the shortest a TokenRequest may ask for


def https_get(url: str, context: ssl.SSLContext, token: str | None = None) -> tuple[int, str]:
    """The status and body of a GET over HTTPS; an error status is an answer too."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5.0, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def reader_role(name: str) -> dict[str, Any]:
    """The chart's metrics-reader ClusterRole (metrics.secure), under `name`."""
    docs = renderer(helm_binary())("--set", "metrics.secure=true")
    role = named(docs, "ClusterRole", "ucloud-operator-metrics-reader")
    return {"metadata": {"name": name}, "rules": role["rules"]}


@pytest.fixture
def secure_operator(
    kubeconfig: str, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        kubeconfig,
        in_artifacts(tmp_path_factory, "operator-metrics-secure.log"),
        ("--metrics-secure", "--no-leader-elect", "--namespace", cluster.namespace),
    )
    process.start()
    yield process
    process.kill(signal.SIGTERM)


@pytest.fixture
def reader_binding(api_client: client.ApiClient, cluster: Cluster) -> Iterator[str]:
    """A ServiceAccount `reader` bound to the chart's metrics-reader role; the role and the
    binding are cluster-scoped, named after the test's namespace and deleted after it."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    name = f"{cluster.namespace}-metrics-reader"
    cluster.core.create_namespaced_service_account(
        cluster.namespace, {"metadata": {"name": "reader"}}
    )
    cluster.core.create_namespaced_service_account(
        cluster.namespace, {"metadata": {"name": "other"}}
    )
    rbac.create_cluster_role(reader_role(name))
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "reader", "namespace": cluster.namespace}
            ],
        }
    )
    yield name
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def token_of(cluster: Cluster, account: str) -> str:
    request = cluster.core.create_namespaced_service_account_token(
        account, cluster.namespace, {"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS}}
    )
    return str(request.status.token)


def wait_until_allowed(api_client: client.ApiClient, user: str, operator: OperatorProcess) -> None:
    """RBAC's cache has the new binding: a first scrape is not answered 403 (and cached)."""
    authorization = client.AuthorizationV1Api(api_client)
    review = {
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        }
    }
    poll(
        f"{user} allowed to get /metrics",
        lambda: authorization.create_subject_access_review(review).status.allowed,
        operator.log_tail,
        30.0,
    )


def served_context(port: int, folder: Path) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate the operator serves: it verifies
    that the self-signed certificate names 127.0.0.1."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5.0)
    (folder / "served.crt").write_text(pem)
    return ssl.create_default_context(cafile=str(folder / "served.crt"))


def test_metrics_over_https_for_allowed_tokens_only(
    api_client: client.ApiClient,
    cluster: Cluster,
    secure_operator: OperatorProcess,
    reader_binding: str,
    tmp_path: Path,
) -> None:
    # The probes: still plain HTTP, on their own port.
    secure_operator.probe("/healthz", timeout=60.0)
    port = secure_operator.metrics_port
    url = f"https://127.0.0.1:{port}/metrics"
    context = poll(
        "the HTTPS /metrics to answer",
        lambda: served_context(port, tmp_path),
        secure_operator.log_tail,
        30.0,
    )
    wait_until_allowed(
        api_client, f"system:serviceaccount:{cluster.namespace}:reader", secure_operator
    )

    status, text = https_get(url, context, token_of(cluster, "reader"))
    assert status == 200, f"{status} {text[:300]}\n{secure_operator.log_tail()}"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {"ucloud_api_requests", "ucloud_workqueue_depth"} <= families.keys()
    # The operator's own reviews, counted as its other API calls.
    created = {
        sample.labels["resource"]: sample.value
        for sample in families["ucloud_api_requests"].samples
        if sample.labels.get("verb") == "create" and sample.labels.get("code") == "201"
    }
    assert created.get("tokenreviews", 0) >= 1 and created.get("subjectaccessreviews", 0) >= 1

    other = f"system:serviceaccount:{cluster.namespace}:other"
    status, text = https_get(url, context, token_of(cluster, "other"))
    assert (status, text) == (403, f"Forbidden: {other} may not get /metrics")
    assert https_get(url, context) == (401, "Unauthorized")
    assert https_get(url, context, f"not-a-token-{uuid.uuid4().hex}")[0] == 401

    # Not over plain HTTP.
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    log = secure_operator.log_tail(400)
    assert "serving /metrics over HTTPS" in log
    assert f"refused to {other} (403)" in log
