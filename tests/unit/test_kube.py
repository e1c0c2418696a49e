"""The API client: a bearer token however the client configuration holds it; watch streams read
line by line; errors by kind; the waits a 429 or 503 asks for (Retry-After)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from ucloud_operator.kube import (
    MAX_RETRY_AFTER,
    Expired,
    Forbidden,
    KubeApi,
    Refused,
    Transient,
    retry_after,
)


def api_with(**api_key: str) -> KubeApi:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = dict(api_key)
    return KubeApi(configuration, concurrency=1, instance="test")


def test_token_from_a_kubeconfig_or_the_service_account() -> None:
    # The kubeconfig and in-cluster loaders store it as "BearerToken", already prefixed.
    headers = api_with(BearerToken="Bearer abc")._headers("application/json")
    assert headers["Authorization"] == "Bearer abc"


def test_token_under_the_old_name_is_sent_as_the_client_sends_it() -> None:
    assert api_with(authorization="bearer abc")._headers("x")["Authorization"] == "bearer abc"


def test_a_rotated_token_is_read_again_after_a_minute() -> None:
    api = api_with(BearerToken="Bearer old")
    assert api._headers("x")["Authorization"] == "Bearer old"
    api._configuration.api_key["BearerToken"] = "Bearer new"  # what the refresh hook does
    assert api._headers("x")["Authorization"] == "Bearer old"
    assert api._token_read_at is not None
    api._token_read_at -= 61  # a minute later
    assert api._headers("x")["Authorization"] == "Bearer new"


def test_client_certificates_send_no_authorization_header() -> None:
    assert "Authorization" not in api_with()._headers("x")


async def served(
    handler: Any, *paths: str, sleep: Any = asyncio.sleep
) -> tuple[TestServer, KubeApi]:
    """A local server answering GETs of `paths` (the pod list when none) with `handler`."""
    app = web.Application()
    for path in paths or ("/api/v1/pods",):
        app.router.add_get(path, handler)
    server = TestServer(app)
    await server.start_server()
    configuration = client.Configuration()
    configuration.host = str(server.make_url("")).rstrip("/")
    api = KubeApi(configuration, concurrency=1, instance="test", sleep=sleep)
    await api.start()
    return server, api


async def test_watch_lines_cut_across_chunks_come_out_whole() -> None:
    lines = [{"type": "ADDED", "object": {"metadata": {"name": f"p{i}"}}} for i in range(3)]
    wire = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.query["watch"] == "true"
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(wire), 7):  # chunks that cut lines anywhere
            await response.write(wire[start : start + 7])
            await asyncio.sleep(0)
        return response

    server, api = await served(stream)
    try:
        got = [event async for event in api.watch("pods", "/api/v1/pods", {}, 5.0)]
    finally:
        await api.close()
        await server.close()
    assert got == lines


async def test_a_garbled_watch_line_is_a_transient_failure() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type": "ADDED", "object": {}}\n{"type": "ADD\n')
        return response

    server, api = await served(stream)
    got: list[Any] = []
    try:
        with pytest.raises(Transient, match="not JSON"):
            async for event in api.watch("pods", "/api/v1/pods", {}, 5.0):
                got.append(event)
    finally:
        await api.close()
        await server.close()
    assert got == [{"type": "ADDED", "object": {}}]


@pytest.mark.parametrize(
    ("status", "error"), [(410, Expired), (403, Forbidden), (400, Refused), (503, Transient)]
)
async def test_a_list_answered_with_an_error_raises_its_kind(
    status: int, error: type[Exception]
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "message": f"no: {status}"}, status=status)

    server, api = await served(refuse)
    try:
        with pytest.raises(error, match=f"no: {status}"):
            await api.list_page("pods", "/api/v1/pods", {"limit": "1"})
    finally:
        await api.close()
        await server.close()


# ---------------------------------------------------------------- Retry-After


class Slept:
    """A fake sleep: records the waits, sleeps not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


WALL = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


async def answering(answers: list[tuple[int, dict[str, str]]]) -> tuple[TestServer, KubeApi, Slept]:
    """A server answering pod creations and lists with `answers` in turn (status, headers),
    then 201 / 200; a KubeApi on it with a fake sleep and the wall clock at WALL."""
    script = list(answers)

    async def answer(request: web.Request) -> web.Response:
        if script:
            status, headers = script.pop(0)
            return web.json_response(
                {"kind": "Status", "message": f"busy: {status}"}, status=status, headers=headers
            )
        if request.method == "POST":
            return web.json_response({"kind": "Pod"}, status=201)
        return web.json_response({"items": [], "metadata": {"resourceVersion": "5"}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/ns/pods", answer)
    server = TestServer(app)
    await server.start_server()
    configuration = client.Configuration()
    configuration.host = str(server.make_url("")).rstrip("/")
    slept = Slept()
    api = KubeApi(configuration, concurrency=1, instance="test", sleep=slept, wall=lambda: WALL)
    await api.start()
    return server, api, slept


POD = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}


@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [
        (429, "7", 7.0),
        (503, "2", 2.0),
        (429, "120", MAX_RETRY_AFTER),  # bounded
        (429, format_datetime(WALL + timedelta(seconds=12), usegmt=True), 12.0),  # a date
    ],
)
async def test_a_write_waits_as_long_as_retry_after_asks(
    status: int, header: str, wait: float
) -> None:
    server, api, slept = await answering([(status, {"Retry-After": header})])
    try:
        await api.create(POD)
    finally:
        await api.close()
        await server.close()
    assert slept.waits == [wait]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (429, {"Retry-After": "0"}),  # asks less than the backoff
        (429, {}),
        (503, {"Retry-After": "soon"}),  # unreadable
        (500, {"Retry-After": "7"}),  # only 429 and 503 carry it for the API server
        (429, {"Retry-After": format_datetime(WALL - timedelta(seconds=30), usegmt=True)}),
    ],
)
async def test_a_write_waits_at_least_its_own_backoff(status: int, headers: dict[str, str]) -> None:
    server, api, slept = await answering([(status, headers)])
    try:
        await api.create(POD)
    finally:
        await api.close()
        await server.close()
    (wait,) = slept.waits
    assert 0.05 <= wait <= 0.15  # the first backoff, 0.1 s, jittered by 0.5-1.5


async def test_a_write_that_stays_throttled_gives_up_with_what_the_server_asked() -> None:
    server, api, slept = await answering([(429, {"Retry-After": "4"})] * 5)
    try:
        with pytest.raises(Transient, match="busy: 429") as gave_up:
            await api.create(POD)
    finally:
        await api.close()
        await server.close()
    assert slept.waits[:3] == [4.0, 4.0, 4.0]
    assert 4.0 <= slept.waits[3] <= 4.5  # the last backoff, 3 s jittered, may exceed it
    assert gave_up.value.retry_after == 4.0


@pytest.mark.parametrize("status", [429, 503])
async def test_a_list_refused_for_now_carries_the_wait_asked(status: int) -> None:
    server, api, _ = await answering([(status, {"Retry-After": "5"})])
    try:
        with pytest.raises(Transient) as busy:
            await api.list_page("pods", "/api/v1/namespaces/ns/pods", {})
        assert busy.value.retry_after == 5.0
        listed = await api.list_page("pods", "/api/v1/namespaces/ns/pods", {})
    finally:
        await api.close()
        await server.close()
    assert listed["metadata"]["resourceVersion"] == "5"


async def test_a_watch_refused_for_now_carries_the_wait_asked() -> None:
    server, api, _ = await answering([(429, {"Retry-After": "3"})])
    try:
        with pytest.raises(Transient) as busy:
            async for _ in api.watch("pods", "/api/v1/namespaces/ns/pods", {}, 5.0):
                pass
    finally:
        await api.close()
        await server.close()
    assert busy.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "3", 3.0),
        (503, "1.5", 1.5),
        (429, "-4", 0.0),
        (429, "", None),
        (429, "nan", None),
        (429, "later", None),
        (502, "3", None),
        (200, "3", None),
        (429, "Sun, 01 Mar 2026 12:01:00 GMT", 60.0),
    ],
)
def test_retry_after_reads_seconds_or_a_date(
    status: int, header: str, seconds: float | None
) -> None:
    assert retry_after(status, {"Retry-After": header}, WALL) == seconds


async def test_discovery_is_retried_through_a_503_and_reads_each_version() -> None:
    answers = {"/apis/scheduling.k8s.io": [503, 200], "/apis/scheduling.k8s.io/v1beta1": [200]}
    documents = {
        "/apis/scheduling.k8s.io": {"versions": [{"version": "v1beta1"}]},
        "/apis/scheduling.k8s.io/v1beta1": {"resources": [{"name": "podgroups"}, {"name": 7}]},
    }

    async def answer(request: web.Request) -> web.Response:
        status = answers[request.path].pop(0)
        if status != 200:
            return web.json_response({"kind": "Status", "message": "busy"}, status=status)
        return web.json_response(documents[request.path])

    slept = Slept()
    server, api = await served(answer, *documents, sleep=slept)
    try:
        found = await api.discover("scheduling.k8s.io")
        missing = await api.discover("nothing.example")  # 404: served by no version
    finally:
        await api.close()
        await server.close()
    assert found == {"v1beta1": ["podgroups"]}
    assert missing == {}
    assert len(slept.waits) == 1
