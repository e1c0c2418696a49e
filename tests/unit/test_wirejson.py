"""orjson on the wire: the same values as the standard library, and kopf's watch streams decoded
with it."""

from __future__ import annotations

import inspect
import json
import math

import pytest
from kopf._cogs.clients import api as kopf_api

from ucloud_operator import wirejson

POD_EVENT = {
    "type": "MODIFIED",
    "object": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-0", "namespace": "ns", "labels": {"ucloud.dk/job": "jöb"}},
        "status": {"phase": "Running", "containerStatuses": [{"restartCount": 0, "ready": True}]},
    },
}


def test_kopf_decodes_its_watch_streams_through_its_modules_json_loads() -> None:
    # If this fails, kopf decodes its streams some other way: decode_kopf_streams() has no effect.
    assert "json.loads(" in inspect.getsource(kopf_api.stream)


def test_decode_kopf_streams_gives_kopf_the_operators_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf_api, "json", kopf_api.json)  # restored after the test
    wirejson.decode_kopf_streams()
    line = json.dumps(POD_EVENT)
    assert kopf_api.json.loads is wirejson.loads_watch_event
    assert kopf_api.json.loads(line) == POD_EVENT
    assert kopf_api.json.dumps is json.dumps  # the rest of the module is the standard one
    assert kopf_api.json.JSONDecodeError is json.JSONDecodeError


@pytest.mark.parametrize(
    "text",
    [json.dumps(POD_EVENT), '{"a": 12345678901234567890}', '{"a": [1.5, null, "\\u00e9"]}'],
)
def test_loads_reads_what_the_standard_library_reads(text: str) -> None:
    assert wirejson.loads(text) == json.loads(text)
    assert wirejson.loads(text.encode()) == json.loads(text)


def test_watch_events_lose_managed_fields_and_nothing_else() -> None:
    managed = [{"manager": "kwok-controller", "fieldsV1": {"f:status": {"f:phase": {}}}}]
    event = json.loads(json.dumps(POD_EVENT))
    event["object"]["metadata"]["managedFields"] = managed
    assert wirejson.loads_watch_event(json.dumps(event).encode()) == POD_EVENT


@pytest.mark.parametrize(
    "event",
    [
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410}},
        {"type": "ERROR", "object": "not an object"},
        [1, 2],
        "text",
    ],
)
def test_watch_events_of_any_shape_are_read_as_they_are(event: object) -> None:
    assert wirejson.loads_watch_event(json.dumps(event)) == event


def test_loads_falls_back_where_orjson_refuses() -> None:
    assert math.isnan(wirejson.loads('{"a": NaN}')["a"])
    assert wirejson.loads('{"a": 1e400}')["a"] == math.inf


def test_loads_raises_the_standard_error_on_broken_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        wirejson.loads('{"a": ')


def test_dumps_is_compact_utf8_json() -> None:
    data = wirejson.dumps(POD_EVENT)
    assert data == json.dumps(POD_EVENT, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(data) == POD_EVENT
