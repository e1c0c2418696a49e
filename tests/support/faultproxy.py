"""A fault-injecting HTTP proxy on loopback, between the operator and the API server.

The operator talks plain HTTP to the proxy; the proxy forwards to the API server over TLS with
the admin client certificate of the test kubeconfig. A share of requests gets a fault instead:
429 with Retry-After, 500, 503, a stall past the client's patience, or a reset connection.
Watch streams are passed through, and can be cut. Every request is counted per second, so a test
can show that faults do not turn into a hot loop.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

FAULTS = ("429", "500", "503", "stall", "reset")
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class FaultStats:
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)


@dataclass
class Throttle:
    """The next `times` requests whose method and path match get 429 with this Retry-After;
    `answered` records when each matching request came and the status it got."""

    method: str
    path_part: str
    times: int
    retry_after: str
    answered: list[tuple[float, int]] = field(default_factory=list)

    def matches(self, request: web.Request) -> bool:
        return request.method == self.method and self.path_part in request.path


class FaultProxy:
    def __init__(self, kubeconfig: str, fault_rate: float, seed: int = 7) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.upstream = cluster["server"].rstrip("/")
        self._ssl = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
        self._ssl.load_cert_chain(user["client-certificate"], user["client-key"])
        self.fault_rate = fault_rate
        self.stats = FaultStats()
        self.throttles: list[Throttle] = []
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0

    # --- lifecycle, from the test's thread ---

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def kubeconfig(self, path: Path) -> str:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "proxy",
                    "clusters": [
                        {"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}
                    ],
                }
            )
        )
        return str(path)

    async def _start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(ssl=self._ssl, limit=64),
            timeout=ClientTimeout(total=None, sock_connect=5),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- the proxy ---

    def throttle(self, method: str, path_part: str, times: int, retry_after: str) -> Throttle:
        """Answer the next `times` matching requests 429 with `Retry-After: retry_after`."""
        rule = Throttle(method, path_part, times, retry_after)
        self.throttles.append(rule)
        return rule

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.per_second[int(time.monotonic())] += 1
        watch = request.query.get("watch") in ("true", "1")
        for rule in self.throttles:
            if rule.matches(request):
                throttled = len(rule.answered) < rule.times
                rule.answered.append((time.monotonic(), 429 if throttled else 0))
                if throttled:
                    self.stats.faults["429"] += 1
                    return self._status(429, "throttled", {"Retry-After": rule.retry_after})
        fault = self._pick_fault(watch)
        if fault is not None:
            self.stats.faults[fault] += 1
            return await self._inject(fault, request)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        upstream = await self._session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            # Pass the client's headers as they are: no Content-Type where it sent none.
            skip_auto_headers=("Content-Type",),
        )
        response = web.StreamResponse(
            status=upstream.status,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS},
        )
        await response.prepare(request)
        try:
            cut_after = self._random.uniform(5, 20) if watch and self.fault_rate else None
            started = time.monotonic()
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if cut_after is not None and time.monotonic() - started > cut_after:
                    self.stats.faults["watch-cut"] += 1
                    break  # the client sees the stream end and must re-watch
        finally:
            upstream.release()
        return response

    def _pick_fault(self, watch: bool) -> str | None:
        if watch or self._random.random() >= self.fault_rate:
            return None
        return self._random.choice(FAULTS)

    async def _inject(self, fault: str, request: web.Request) -> web.StreamResponse:
        status = {"429": 429, "500": 500, "503": 503}.get(fault)
        if status is not None:
            return self._status(status, f"injected {fault}", {"Retry-After": "1"})
        if fault == "stall":
            await asyncio.sleep(25)  # past the operator's 20 s request timeout
            return web.Response(status=504)
        transport = request.transport
        if transport is not None:
            transport.abort()  # a connection reset
        return web.Response(status=500)

    @staticmethod
    def _status(code: int, message: str, headers: dict[str, str]) -> web.Response:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "code": code,
        }
        return web.json_response(body, status=code, headers=headers)
