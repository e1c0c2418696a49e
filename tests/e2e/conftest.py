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
  UCLOUD_E2E_HEALTH_URL        base URL of /healthz and /readyz (probe checks skipped when unset)
  UCLOUD_E2E_OPERATOR_LOG      a file with the operator's log; its tail is printed on failure
  UCLOUD_E2E_TIMEOUT           seconds one wait may take (default 60; kind pulls images: more)

Replica pods are told what to do twice: KWOK reads the ucloud.dk/test-* annotations
(hack/kwok-stages.yaml) and ignores the command; a real kubelet runs the busybox command and
ignores the annotations.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

GROUP, VERSION, PLURAL = "ucloud.dk", "v1", "ucloudjobs"
TIMEOUT = float(os.environ.get("UCLOUD_E2E_TIMEOUT", "60"))
BUSYBOX = "busybox:1.36"
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without an installed operator (UCLOUD_E2E=1, set by hack/e2e-local.sh and hack/e2e-kind.sh)
    # these tests are not collected at all, rather than collected and skipped.
    if os.environ.get("UCLOUD_E2E") == "1":
        return
    ours = [item for item in items if "tests/e2e" in str(item.fspath)]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item not in ours]


def operator_log_tail(lines: int = 80) -> str:
    path = os.environ.get("UCLOUD_E2E_OPERATOR_LOG")
    if not path:
        return "(UCLOUD_E2E_OPERATOR_LOG not set)"
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def poll(what: str, check: Callable[[], T | None], evidence: Callable[[], str],
         timeout: float = TIMEOUT) -> T:
    """Call `check` until it returns a truthy value; on the deadline fail with the evidence."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (ApiException, OSError) as error:
            last_error = error
        time.sleep(delay)  # a poll interval, not a wait for an outcome
        delay = min(delay * 1.5, 1.0)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n"
                f"{evidence()}", pytrace=False)


class Metrics:
    """The operator's /metrics, parsed: {(name, labels as a frozenset): value}."""

    def __init__(self, url: str) -> None:
        self.url = url

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, text = http_get(self.url)
        assert status == 200, f"GET {self.url}: {status}"
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    @staticmethod
    def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
              **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


class Jobs:
    """UCloudJobs in the test namespace, and the evidence printed when a wait fails."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, name: str, *, replicas: int, annotations: dict[str, str],
               command: str) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "UCloudJob",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "main",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", command],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }],
                    },
                },
            },
        }
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                   {"spec": spec})

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                        name)
        except ApiException as error:
            if error.status != 404:
                raise

    def pods(self, name: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(  # type: ignore[no-any-return]
            self.namespace, label_selector=f"ucloud.dk/job-name={name}").items

    def services(self, name: str) -> list[client.V1Service]:
        return self.core.list_namespaced_service(  # type: ignore[no-any-return]
            self.namespace, field_selector=f"metadata.name={name}").items

    def events(self, name: str) -> list[client.CoreV1Event]:
        selector = f"involvedObject.kind=UCloudJob,involvedObject.name={name}"
        return self.core.list_namespaced_event(  # type: ignore[no-any-return]
            self.namespace, field_selector=selector).items

    def evidence(self, name: str) -> str:
        try:
            status = yaml.safe_dump(self.status(name), sort_keys=False)
        except ApiException as error:
            status = f"(job not readable: {error.status})\n"
        try:
            events = "\n".join(f"  {e.type} {e.reason}: {e.message}" for e in self.events(name))
            pods = "\n".join(f"  {p.metadata.name}: {p.status.phase} {p.status.reason or ''}"
                             for p in self.pods(name))
        except ApiException as error:
            events = pods = f"  (not readable: {error.status})"
        return (f"--- job {self.namespace}/{name} status ---\n{status}"
                f"--- events ---\n{events}\n--- pods ---\n{pods}\n"
                f"--- operator log tail ---\n{operator_log_tail()}")

    def wait_for_state(self, name: str, state: str, reason: str | None = None,
                       timeout: float = TIMEOUT) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("state") == state and reason in (None, status.get("reason")):
                return status
            return None
        return poll(f"job {name}: state {state} reason {reason}", reached,
                    lambda: self.evidence(name), timeout)


@pytest.fixture(scope="session")
def api() -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                            client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def namespace(api: client.ApiClient) -> Iterator[str]:
    given = os.environ.get("UCLOUD_E2E_NAMESPACE")
    if given:
        yield given
        return
    core = client.CoreV1Api(api)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    # Pods are refused until the ServiceAccount controller has made "default".
    poll(f"ServiceAccount default in {name}",
         lambda: core.read_namespaced_service_account("default", name), lambda: "")
    yield name
    core.delete_namespace(name)


@pytest.fixture
def jobs(api: client.ApiClient, namespace: str) -> Jobs:
    return Jobs(api, namespace)


@pytest.fixture
def job_name(request: pytest.FixtureRequest, jobs: Jobs) -> Iterator[str]:
    """A unique job name; the job is deleted after the test unless it failed (for inspection)."""
    name = f"{request.node.name[5:25].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is None or report.passed:
        jobs.delete(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def metrics() -> Metrics | None:
    """The operator's metrics, or None when UCLOUD_E2E_METRICS_URL is not set."""
    url = os.environ.get("UCLOUD_E2E_METRICS_URL")
    return Metrics(url) if url else None


@pytest.fixture(scope="session")
def health_url() -> str:
    url = os.environ.get("UCLOUD_E2E_HEALTH_URL")
    if not url:
        pytest.fail("UCLOUD_E2E_HEALTH_URL not set: the e2e scripts always give it")
    return url.rstrip("/")
