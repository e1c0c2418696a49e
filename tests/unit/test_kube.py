"""The API client: a bearer token however the client configuration holds it; watch streams read
line by line; errors by kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from ucloud_operator.kube import Expired, Forbidden, KubeApi, Refused, Transient


def api_with(**api_key: str) -> KubeApi:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = dict(api_key)
    return KubeApi(configuration, concurrency=1, instance="test")


def test_token_from_a_kubeconfig_or_the_service_account() -> None:
    # kubernetes >= 36 stores it as "BearerToken", already prefixed.
    headers = api_with(BearerToken="Bearer abc")._headers("application/json")
    assert headers["Authorization"] == "Bearer abc"


def test_token_under_the_old_name_gets_its_prefix() -> None:
    assert api_with(authorization="abc")._headers("x")["Authorization"] == "Bearer abc"


def test_client_certificates_send_no_authorization_header() -> None:
    assert "Authorization" not in api_with()._headers("x")


async def served(handler: Any) -> tuple[TestServer, KubeApi]:
    app = web.Application()
    app.router.add_get("/api/v1/pods", handler)
    server = TestServer(app)
    await server.start_server()
    configuration = client.Configuration()
    configuration.host = str(server.make_url("")).rstrip("/")
    api = KubeApi(configuration, concurrency=1, instance="test")
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
