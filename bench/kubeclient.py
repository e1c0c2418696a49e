"""A small asyncio client for the Kubernetes API (aiohttp), used by every part of the benchmark.

Only what the benchmark needs: requests with a kubeconfig's client certificate, a keep-alive
connection pool that can be opened in advance, and watches that stamp each line with
`time.monotonic_ns()` before it is parsed. It identifies itself as `ucloud-bench/<part>` so the
audit log tells its requests apart from the operator's and the control plane's.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import yaml

USER_AGENT = "ucloud-bench"


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ssl: ssl.SSLContext | bool


def _material(entry: Mapping[str, Any], key: str, tmpdir: str) -> str | None:
    """A kubeconfig entry's file path, writing `<key>-data` to a temporary file if inline."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    path = os.path.join(tmpdir, key)
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
    return path


def load_kubeconfig(path: str) -> KubeConfig:
    with open(path) as f:
        config = yaml.safe_load(f)
    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    server = str(cluster["server"]).rstrip("/")
    if not server.startswith("https://"):
        return KubeConfig(server, False)
    with tempfile.TemporaryDirectory() as tmpdir:
        ca = _material(cluster, "certificate-authority", tmpdir)
        ctx = ssl.create_default_context(cafile=ca)
        cert = _material(user, "client-certificate", tmpdir)
        key = _material(user, "client-key", tmpdir)
        if cert and key:
            ctx.load_cert_chain(cert, key)
    return KubeConfig(server, ctx)


class ApiError(Exception):
    def __init__(self, status: int, body: bytes, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]!r}")
        self.status = status


class Client:
    """One aiohttp session: `pool` keep-alive connections at most (0: unlimited)."""

    def __init__(self, kubeconfig: str, part: str, pool: int = 64, timeout: float = 60) -> None:
        self.config = load_kubeconfig(kubeconfig)
        self.user_agent = f"{USER_AGENT}/{part}"
        self._pool = pool
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(
            ssl=self.config.ssl,
            limit=self._pool,
            keepalive_timeout=300,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=10),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with Client(...)`"
        return self._session

    async def warm(self, connections: int) -> None:
        """Open `connections` keep-alive connections now (TLS handshakes out of any timed run)."""
        await asyncio.gather(*(self.request("GET", "/version") for _ in range(connections)))

    async def request(  # noqa: PLR0917
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> tuple[int, bytes]:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(
            method, self.config.server + path, data=data, headers=headers, params=params
        ) as response:
            payload = await response.read()
            if response.status not in ok:
                raise ApiError(response.status, payload, f"{method} {path}")
            return response.status, payload

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return orjson.loads((await self.request("GET", path, params=params))[1])

    async def watch(
        self, path: str, params: Mapping[str, str], timeout_seconds: int = 3600
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Yield `(monotonic_ns at receipt, raw line)` for each watch event of one watch call."""
        query = {
            **params,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self.session.get(
            self.config.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=timeout_seconds + 30
            ),
        ) as response:
            if response.status != 200:
                raise ApiError(response.status, await response.read(), f"WATCH {path}")
            buffer = b""
            async for chunk in response.content.iter_any():
                stamp = time.monotonic_ns()
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    line, buffer = buffer[:newline], buffer[newline + 1 :]
                    if line.strip():
                        yield stamp, line


# ---------------------------------------------------------------- paths
def core(namespace: str, resource: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/{resource}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def group(api: str, namespace: str, resource: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{api}/namespaces/{namespace}/{resource}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


UCLOUDJOBS = "ucloud.dk/v1"
BATCH = "batch/v1"
