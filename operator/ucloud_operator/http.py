"""/metrics, /healthz and /readyz, served from the operator's event loop (aiohttp, as kopf uses).

Serving from the event loop is deliberate: a loop that stalls stops answering and the liveness
probe fails with it. With --metrics-secure, /metrics is served over HTTPS to authorized callers
only (metrics_auth); the probes stay plain HTTP on their own address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY
from .metrics_auth import SecureMetrics, bearer_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: dict[str, object]


def parse_address(address: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or default_host, int(port)


class Server:
    def __init__(
        self,
        health: Callable[[], Check],
        ready: Callable[[], Check],
        *,
        secure: SecureMetrics | None = None,
    ) -> None:
        self._health = health
        self._ready = ready
        self._secure = secure
        self._runners: list[web.AppRunner] = []
        self._cert_task: asyncio.Task[None] | None = None

    async def start(self, metrics_address: str, health_address: str) -> None:
        secure = self._secure
        shared = metrics_address == health_address
        if secure is not None and shared and metrics_address and not metrics_address.endswith(":0"):
            raise ValueError("secure metrics: the probes need an address of their own")
        metrics = web.Application()
        metrics.router.add_get("/metrics", self._metrics)
        # Secure metrics: the probes on a plain server of their own (port 0: another port).
        probes = metrics if shared and secure is None else web.Application()
        probes.router.add_get("/healthz", self._probe(self._health))
        probes.router.add_get("/readyz", self._probe(self._ready))
        await self._serve(metrics, metrics_address, secure.cert.context if secure else None)
        if probes is not metrics:
            await self._serve(probes, health_address)
        if secure is not None and metrics_address:
            logger.info(
                "serving /metrics over HTTPS on %s (certificate %s) to callers allowed to get "
                "/metrics (TokenReview, SubjectAccessReview)",
                metrics_address,
                secure.cert.origin,
            )
            if secure.cert.directory:
                self._cert_task = asyncio.create_task(secure.cert.watch(), name="metrics cert")

    async def stop(self) -> None:
        if self._cert_task is not None:
            self._cert_task.cancel()
            await asyncio.gather(self._cert_task, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()

    async def _serve(
        self, app: web.Application, address: str, context: ssl.SSLContext | None = None
    ) -> None:
        if not address:
            return
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = parse_address(address)
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        self._runners.append(runner)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._secure is not None:
            token = bearer_token(request.headers.get("Authorization"))
            decision = await self._secure.authorizer.check(token, request.path, "get")
            if not decision.allowed:
                headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else {}
                return web.Response(status=decision.status, text=decision.answer, headers=headers)
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
