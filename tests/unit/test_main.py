"""The entry point hands kopf everything it would otherwise look up on the host."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import kopf
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from ucloud_operator import __main__ as entry
from ucloud_operator.leader import LeaseError


def test_the_operator_names_itself_without_a_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A UID without a passwd entry, as under containerd with the image's numeric USER.
    def no_such_user() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    handed: dict[str, Any] = {}

    async def fake_operator(**kwargs: Any) -> None:
        handed.update(kwargs)

    monkeypatch.setattr(getpass, "getuser", no_such_user)
    monkeypatch.setattr(kopf, "operator", fake_operator)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setenv("POD_NAME", "ucloud-operator-7d9f-abcde")

    def run_coroutine(coroutine: Any) -> None:  # the fake operator finishes without awaiting
        with pytest.raises(StopIteration):
            coroutine.send(None)

    monkeypatch.setattr(uvloop, "run", run_coroutine)
    assert entry.main([]) == 0
    identity = handed["identity"]
    assert isinstance(identity, str) and identity.startswith("ucloud-operator-7d9f-abcde_")


class RefusingLeaseApi:
    """The Lease as an identity without rights on it sees it: every request 403."""

    made: ClassVar[list[tuple[str, str]]] = []
    closed = False

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        RefusingLeaseApi.made.append((namespace, name))

    async def get(self) -> dict[str, Any] | None:
        raise LeaseError(403, 'leases.coordination.k8s.io "ucloud-operator" is forbidden: '
                              'User "me" cannot get resource "leases"')

    def close(self) -> None:
        RefusingLeaseApi.closed = True


@pytest.fixture
def no_kopf(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """kopf and the cluster faked: what kopf.operator was handed, once per start."""
    started: list[dict[str, Any]] = []

    async def fake_operator(**kwargs: Any) -> None:
        started.append(kwargs)

    def run_coroutine(coroutine: Any) -> None:
        with pytest.raises(StopIteration):
            coroutine.send(None)

    monkeypatch.setattr(kopf, "operator", fake_operator)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setattr(uvloop, "run", run_coroutine)
    monkeypatch.setattr(entry, "load_client_config", client.Configuration)
    monkeypatch.setattr(entry, "KubernetesLeaseApi", RefusingLeaseApi)
    RefusingLeaseApi.made = []
    RefusingLeaseApi.closed = False
    for name in ("UCLOUD_LEADER_ELECT", "UCLOUD_LEASE_NAMESPACE", "POD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    return started


def test_a_lease_it_may_not_use_stops_the_operator_at_start(
    no_kopf: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert entry.main(["--leader-elect", "--lease-namespace", "ops"]) == 1
    assert no_kopf == []  # kopf never started: no idling, no warning every 2 s
    assert RefusingLeaseApi.made == [("ops", "ucloud-operator")] and RefusingLeaseApi.closed
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert message.startswith("cannot use lease ops/ucloud-operator for leader election (get: ")
    assert 'cannot get resource "leases"' in message
    assert "--no-leader-elect" in message


def test_a_single_process_by_default_checks_no_lease(no_kopf: list[dict[str, Any]]) -> None:
    assert entry.main([]) == 0
    assert entry.main(["--no-leader-elect"]) == 0
    assert len(no_kopf) == 2
    assert RefusingLeaseApi.made == []


async def test_the_binary_exits_non_zero_with_the_api_servers_refusal(tmp_path: Path) -> None:
    """`python -m ucloud_operator --leader-elect` against an API server that refuses the Lease
    (as to a user without rights on it): it exits 1 at once, saying why."""
    asked: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        asked.append(f"{request.method} {request.path}")
        return web.json_response(
            {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
             "message": 'leases.coordination.k8s.io "ucloud-operator" is forbidden: User "dev" '
                        'cannot get resource "leases" in API group "coordination.k8s.io" in '
                        'the namespace "default"'},
            status=403)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", refuse)
    server = TestServer(app)
    await server.start_server()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": str(server.make_url("")).rstrip("/")}}],
        "users": [{"name": "dev", "user": {"token": "t"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "dev"}}],
    }))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UCLOUD_", "KUBERNETES_", "POD_"))}
    env["KUBECONFIG"] = str(kubeconfig)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ucloud_operator", "--leader-elect", "--log-format", "text",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.close()
    text = output.decode()
    assert process.returncode == 1, text
    assert asked == ["GET /apis/coordination.k8s.io/v1/namespaces/default/leases/ucloud-operator"]
    assert "cannot use lease default/ucloud-operator for leader election (get: " in text
    assert 'User "dev" cannot get resource "leases"' in text
    assert "Traceback" not in text


def test_an_old_flag_name_is_warned_about(
    no_kopf: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert entry.main(["--api-threads=4"]) == 0
    assert "--api-threads is deprecated: use --api-concurrency" in caplog.text
    assert no_kopf[0]["memo"].runtime.settings.api_concurrency == 4
