"""JSON on the wire, with orjson: the operator's request bodies, its stored jobs, the pod
informer's list and watch, and the UCloudJob watch stream that kopf reads.

Decoding watch events was the largest leaf of the operator's CPU profile under load
(`UCLOUD_PROBE_PROFILE=... bench/cpu_probe.py 1000`: the standard library's `raw_decode` held 8 % of
the samples, nearly all of it for kopf's watch streams). kopf decodes each line of a stream with
`json.loads` of its module `kopf._cogs.clients.api`; `decode_kopf_streams()` gives that module a
`json` whose `loads` is orjson's, at half the cost for a pod. Where orjson refuses a text that
the standard library reads (NaN, infinities, lone surrogates: nothing the API server writes), the
standard library reads it, so kopf sees the same values either way.

Each watch event also loses its object's `metadata.managedFields` as it is read, as
controller-runtime's caches can drop them (`cache.TransformStripManagedFields`): nothing here reads
them, and they were about 60 % of a replica pod's dicts and lists (69 of 113 per pod event on the
local control plane, when kopf watched the pods too); kopf's idle per-object workers would otherwise
keep them, and the collector scan them, for up to `settings.queueing.idle_timeout`. (The list that
starts each watch is read by aiohttp, not through this module, and keeps them: once per watch start,
not per event.)

The module attribute is kopf's internal interface (kopf is pinned); `tests/unit/test_wirejson.py`
fails if kopf stops decoding its streams through it.
"""

from __future__ import annotations

import json
import types
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON, as UTF-8 bytes."""
    return orjson.dumps(value)


def loads(text: bytes | str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def loads_watch_event(text: bytes | str) -> Any:
    """One line of a watch stream, its object without `metadata.managedFields`."""
    event = loads(text)
    if isinstance(event, dict):
        body = event.get("object")
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
    return event


class _JsonForKopf(types.ModuleType):
    """The standard `json` module, but for `loads`, which kopf calls for watch lines only."""

    loads = staticmethod(loads_watch_event)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


def decode_kopf_streams() -> None:
    """Make kopf decode the watch streams with `loads_watch_event`. Idempotent; process-wide."""
    # Imported here: the pure modules that use dumps/loads (jobs.py) stay free of kopf.
    from kopf._cogs.clients import api as kopf_api  # noqa: PLC0415

    kopf_api.json = _JsonForKopf("json")  # type: ignore[attr-defined]
