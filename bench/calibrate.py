"""The ceiling C: raw UCloudJob status PATCHes per second from one asyncio client.

One aiohttp session, its keep-alive pool opened before the timed runs (no TLS handshake is timed),
one UCloudJob per concurrent worker (no two writers on one object), and rising concurrency. Each
PATCH is a JSON merge patch of `status.message` with a new value, so every request really writes
to etcd (the API server skips writes that change nothing). No operator runs meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubeclient import UCLOUDJOBS, Client, group
from stats import summary


def calibration_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "ucloud.dk/v1",
        "kind": "UCloudJob",
        "metadata": {"name": name, "labels": {"ucloud.dk/bench": "calibration"}},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"annotations": {"ucloud.dk/test-stay-pending": "true"}},
                "spec": {"containers": [{"name": "main", "image": "bench"}]},
            },
        },
    }


async def calibrate(
    kubeconfig: str,
    namespace: str,
    levels: tuple[int, ...],
    seconds: float,
    max_requests_per_level: int = 200_000,
) -> dict[str, Any]:
    top = max(levels)
    async with Client(kubeconfig, "calibrate", pool=top, timeout=30) as client:
        path = group(UCLOUDJOBS, namespace, "ucloudjobs")
        names = [f"calib-{i}" for i in range(top)]
        sem = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with sem:
                await client.request("POST", path, calibration_job(name), ok=(201, 409))

        await asyncio.gather(*(create(n) for n in names))
        await client.warm(top)
        counter = 0

        async def patch(name: str) -> None:
            nonlocal counter
            counter += 1
            await client.request(
                "PATCH",
                f"{path}/{name}/status",
                {"status": {"message": f"calibration write {counter}"}},
                content_type="application/merge-patch+json",
            )

        # Warm-up: one short round at full concurrency (connections, apiserver caches).
        await _round(patch, names, min(1.0, seconds), max_requests_per_level)
        results = []
        for level in levels:
            results.append(await _round(patch, names[:level], seconds, max_requests_per_level))
        best = max(results, key=lambda r: r["writes_per_second"])
        return {
            "method": "one asyncio aiohttp client, HTTP/1.1 keep-alive pool opened in advance, "
            "JSON merge patch of ucloudjobs/status (a new status.message each time), "
            f"one object per worker, {seconds:g} s per concurrency level",
            "levels": results,
            "ceiling_writes_per_second": best["writes_per_second"],
            "ceiling_concurrency": best["concurrency"],
        }


async def _round(patch: Any, names: list[str], seconds: float, cap: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(name: str) -> None:
        nonlocal errors
        while time.monotonic() < deadline and len(latencies) + errors < cap:
            t0 = time.monotonic()
            try:
                await patch(name)
                latencies.append(time.monotonic() - t0)
            except Exception:
                errors += 1
                await asyncio.sleep(0.05)

    start = time.monotonic()
    await asyncio.gather(*(worker(n) for n in names))
    elapsed = time.monotonic() - start
    return {
        "concurrency": len(names),
        "writes": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "writes_per_second": round(len(latencies) / elapsed, 1),
        "latency_seconds": summary(latencies),
    }
