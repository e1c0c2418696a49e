"""/metrics, /healthz and /readyz, served from the operator's event loop (aiohttp, as kopf uses).

Serving from the event loop is deliberate: a loop that stalls stops answering and the liveness
probe fails with it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: dict[str, object]


def parse_address(address: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or default_host, int(port)


class Server:
    def __init__(self, health: Callable[[], Check], ready: Callable[[], Check]) -> None:
        self._health = health
        self._ready = ready
        self._runners: list[web.AppRunner] = []

    async def start(self, metrics_address: str, health_address: str) -> None:
        metrics = web.Application()
        metrics.router.add_get("/metrics", self._metrics)
        probes = metrics if health_address == metrics_address else web.Application()
        probes.router.add_get("/healthz", self._probe(self._health))
        probes.router.add_get("/readyz", self._probe(self._ready))
        await self._serve(metrics, metrics_address)
        if probes is not metrics:
            await self._serve(probes, health_address)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    async def _serve(self, app: web.Application, address: str) -> None:
        if not address:
            return
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = parse_address(address)
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    def _probe(
        check: Callable[[], Check],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_: web.Request) -> web.StreamResponse:
            result = check()
            return web.Response(
                status=200 if result.ok else 503,
                text=json.dumps({"ok": result.ok, **result.detail}),
                content_type="application/json",
            )

        return handler
