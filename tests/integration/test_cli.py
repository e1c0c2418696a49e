"""`kubectl ucloud` against a real API server and the session's operator: each subcommand once,
and its clear errors. `wait` runs as processes, and once kubectl itself runs the plugin.

KWOK plays the kubelet here and serves no container logs (hack/kwok-stages.yaml configures no
KWOK Logs or ClusterLogs): `logs` is checked to pass on the API server's answer for a KWOK pod
as one clear line. A real log belongs to the real-node tier (tests/node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.support.cluster import EVICT, EXIT_AFTER, Cluster, exits, history
from ucloud_operator.cli import main
from ucloud_operator.models import GROUP, PLURAL, JobState, Reason

Run = Callable[..., subprocess.CompletedProcess[str]]
PLUGIN = [sys.executable, "-m", "ucloud_operator.cli"]  # what the kubectl-ucloud script runs


@pytest.fixture
def ucloud(cluster: Cluster, kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """`kubectl ucloud ARGS -n <the test's namespace>`, run in this process (`main`, what the
    script calls; a process each would cost seconds of imports on a busy machine)."""

    def run(*args: str, config: str = kubeconfig) -> subprocess.CompletedProcess[str]:
        argv = ["--kubeconfig", config, "-n", cluster.namespace, *args]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed run, checked to be one clear line and no traceback."""
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result
    return result.stderr.strip()


def test_get_in_a_namespace_in_all_and_as_json(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("gang", replicas=2)
    cluster.wait_for_state("gang", JobState.RUNNING)

    table = ucloud("get")
    assert table.returncode == 0, table
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "REASON", "REPLICAS", "AGE"]
    assert lines[1].split()[:4] == ["gang", "RUNNING", "AllReplicasRunning", "2/2"]

    everywhere = ucloud("get", "-A", "-o", "wide")
    assert everywhere.returncode == 0, everywhere
    header, *rows = everywhere.stdout.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"] and header.split()[-1] == "MESSAGE"
    ours = [row.split() for row in rows if row.split()[0] == cluster.namespace]
    assert ours and ours[0][1:4] == ["gang", "RUNNING", "AllReplicasRunning"]
    assert " ".join(ours[0]).endswith("2/2 replicas running")

    listed = json.loads(ucloud("get", "-o", "json").stdout)
    assert listed["kind"] == "List"
    assert [job["metadata"]["name"] for job in listed["items"]] == ["gang"]
    one = yaml.safe_load(ucloud("get", "gang", "-o", "yaml").stdout)
    assert one["status"]["state"] == "RUNNING" and one["kind"] == "UCloudJob"


def test_describe_after_the_job_ran(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("done", replicas=2, annotations=exits(0, "1s"))
    cluster.wait_for_state("done", JobState.SUCCESS, Reason.COMPLETED)
    cluster.wait_for_event("done", Reason.COMPLETED)  # posted after the status it reports

    described = ucloud("describe", "done")
    assert described.returncode == 0, described
    lines = described.stdout.splitlines()
    assert "State:      SUCCESS" in lines and "Reason:     Completed" in lines
    replicas = lines[lines.index("Replica pods:") + 2 : lines.index("History:")]
    assert [row.split()[:2] for row in replicas] == [["0", "done-0"], ["1", "done-1"]]
    assert all(row.split()[2].startswith("ucloud-node-") for row in replicas)  # the node
    # The replica that ended the job exited 0; the other may have been deleted after it.
    assert any(row.split()[3:5] == ["Succeeded", "0"] for row in replicas), replicas
    shown = lines[lines.index("History:") + 2 : lines.index("Events:")]
    assert [row.split()[1] for row in shown] == history(cluster.status("done"))
    assert shown[-1].split()[1:3] == ["SUCCESS", "Completed"]
    events = lines[lines.index("Events:") + 2 :]
    assert any(row.split()[:2] == ["Normal", "Completed"] for row in events), events
    assert all("ucloud-operator" in row for row in events)


def test_logs_of_a_kwok_pod_is_the_api_server_s_clear_error(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("talky")
    cluster.wait_for_state("talky", JobState.RUNNING)
    # KWOK has no log to serve; the API server says so, and the plugin passes it on in one line.
    said = failed(ucloud("logs", "talky"))
    assert said.startswith('error: cannot read the log of pod "talky-0", container "main": ')
    assert 'no logs found for container "main"' in said
    assert failed(ucloud("logs", "talky", "--rank", "1")) == (
        'error: ucloudjob "talky" has ranks 0..0; there is no rank 1'
    )


def test_cancel(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("gang", replicas=2)
    cluster.wait_for_state("gang", JobState.RUNNING)

    cancelled = ucloud("cancel", "gang")
    assert cancelled.returncode == 0, cancelled
    assert "cancel requested (was RUNNING)" in cancelled.stdout
    assert cluster.job("gang")["spec"]["cancel"] is True
    status = cluster.wait_for_state("gang", JobState.SUCCESS, Reason.CANCELLED)
    assert history(status)[-2:] == [JobState.CANCELING, JobState.SUCCESS]

    assert failed(ucloud("cancel", "gang")) == (
        'error: ucloudjob "gang" is already SUCCESS (Cancelled): there is nothing to cancel'
    )
    # Its pods are deleted with the cancel: logs says the replica has none.
    cluster.wait_for("gang", "its pods gone", lambda: not cluster.pods("gang"))
    assert "replica 0 has no pod" in failed(ucloud("logs", "gang"))


def test_extend(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("timed", deadline=600)
    before = cluster.wait_for_state("timed", JobState.RUNNING)
    expires = datetime.fromisoformat(before["expiresAt"])

    extended = ucloud("extend", "timed", "--by", "30m")
    assert extended.returncode == 0, extended
    assert "activeDeadlineSeconds 600 -> 2400; expires at" in extended.stdout
    assert cluster.job("timed")["spec"]["activeDeadlineSeconds"] == 2400
    later = (expires + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    cluster.wait_for(
        "timed", "expiresAt 30m later", lambda: cluster.status("timed")["expiresAt"] == later
    )

    cluster.create_job("open")
    cluster.wait_for_state("open", JobState.RUNNING)
    said = failed(ucloud("extend", "open", "--by", "1h"))
    assert 'ucloudjob "open" has no deadline (spec.activeDeadlineSeconds)' in said
    assert f"kubectl patch ucloudjob open -n {cluster.namespace} --type=merge" in said


def test_extend_a_final_job_is_refused(cluster: Cluster, ucloud: Run) -> None:
    cluster.create_job("short", deadline=1)
    cluster.wait_for_state("short", JobState.EXPIRED, Reason.DEADLINE_EXCEEDED)
    assert failed(ucloud("extend", "short", "--by", "1h")) == (
        'error: ucloudjob "short" is already EXPIRED (DeadlineExceeded): its deadline can no '
        "longer be extended"
    )


def test_wait_exit_codes(cluster: Cluster, kubeconfig: str) -> None:
    cluster.create_job("ok", annotations=exits(0, "2s"))
    cluster.create_job("evicted", annotations={EVICT: "true", EXIT_AFTER: "2s"})
    cluster.create_job("expiring", deadline=2)
    cluster.create_job("forever")
    waits = {
        name: subprocess.Popen(
            [*PLUGIN, "--kubeconfig", kubeconfig, "-n", cluster.namespace, "wait", name, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in [
            ("ok", []),
            ("evicted", []),
            ("expiring", []),
            ("forever", ["--timeout", "5s"]),
        ]
    }
    results = {name: (*p.communicate(timeout=120), p.returncode) for name, p in waits.items()}
    codes = {name: code for name, (_, _, code) in results.items()}
    assert codes == {"ok": 0, "evicted": 1, "expiring": 2, "forever": 3}, results
    # Each printed the states the job went through from where the wait found it (on a busy
    # machine the job may have ended first), the final state last.
    for name, final in [("ok", "SUCCESS"), ("evicted", "FAILURE"), ("expiring", "EXPIRED")]:
        printed = [line.split()[2] for line in results[name][0].splitlines()]
        states = history(cluster.status(name))
        assert printed == states[len(states) - len(printed) :], results[name]
        assert printed[-1] == final, results[name]
    timed_out = "timed out after 5s waiting for ucloudjob/forever (state RUNNING)"
    assert timed_out in results["forever"][1]


def test_no_such_job(cluster: Cluster, ucloud: Run) -> None:
    for args in (["get", "nope"], ["describe", "nope"], ["cancel", "nope"], ["wait", "nope"]):
        assert failed(ucloud(*args)) == (
            f'error: ucloudjob "nope" not found in namespace "{cluster.namespace}"'
        )


def service_account_kubeconfig(cluster: Cluster, kubeconfig: str, name: str, folder: Path) -> str:
    """A kubeconfig of the admin's cluster entry and a token of a new ServiceAccount `name`."""
    cluster.core.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": name}})
    token = cluster.core.create_namespaced_service_account_token(
        name, cluster.namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    path = folder / f"{name}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [{"name": name, "context": {"cluster": entry["name"], "user": name}}],
                "current-context": name,
            }
        )
    )
    return str(path)


def test_no_rights(cluster: Cluster, kubeconfig: str, ucloud: Run, tmp_path: Path) -> None:
    cluster.create_job("gang")
    cluster.wait_for_state("gang", JobState.RUNNING)
    viewer = service_account_kubeconfig(cluster, kubeconfig, "viewer", tmp_path)
    said = failed(ucloud("get", "gang", config=viewer))
    assert said.startswith(
        f'error: forbidden: you may not get ucloudjobs.ucloud.dk in namespace "{cluster.namespace}"'
    )
    assert f"system:serviceaccount:{cluster.namespace}:viewer" in said  # the server's words

    rbac = client.RbacAuthorizationV1Api(cluster.core.api_client)
    rbac.create_namespaced_role(
        cluster.namespace,
        {
            "metadata": {"name": "view-jobs"},
            "rules": [
                {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        cluster.namespace,
        {
            "metadata": {"name": "view-jobs"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "view-jobs",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "viewer", "namespace": cluster.namespace}
            ],
        },
    )
    cluster.wait_for(
        "gang", "the Role to apply", lambda: ucloud("get", config=viewer).returncode == 0
    )
    # describe shows the job without its Events, which the Role does not grant.
    described = ucloud("describe", "gang", config=viewer)
    assert described.returncode == 0, described
    assert "<cannot list events: forbidden: you may not list events" in described.stdout
    assert failed(ucloud("cancel", "gang", config=viewer)).startswith(
        "error: forbidden: you may not patch ucloudjobs.ucloud.dk"
    )
    assert not cluster.job("gang")["spec"].get("cancel")


def test_kubectl_finds_the_plugin(
    cluster: Cluster, kubeconfig: str, kubectl_bin: str, tmp_path: Path
) -> None:
    # What `pip install` puts on PATH: a kubectl-ucloud script that runs the plugin.
    script = tmp_path / "kubectl-ucloud"
    script.write_text(f'#!/bin/sh\nexec {" ".join(PLUGIN)} "$@"\n')
    script.chmod(0o755)
    cluster.create_job("gang")
    cluster.wait_for_state("gang", JobState.RUNNING)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    # kubectl hands a plugin what follows its name: the flags go after `ucloud`.
    result = subprocess.run(
        [kubectl_bin, "ucloud", "--kubeconfig", kubeconfig, "-n", cluster.namespace, "get"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[1].split()[:2] == ["gang", "RUNNING"]
