"""orjson on the wire: the same values as the standard library."""

from __future__ import annotations

import json
import math

import pytest

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


@pytest.mark.parametrize(
    "text",
    [json.dumps(POD_EVENT), '{"a": 12345678901234567890}', '{"a": [1.5, null, "\\u00e9"]}'],
)
def test_loads_reads_what_the_standard_library_reads(text: str) -> None:
    assert wirejson.loads(text) == json.loads(text)
    assert wirejson.loads(text.encode()) == json.loads(text)


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
