"""The entry point hands kopf everything it would otherwise look up on the host."""

from __future__ import annotations

import getpass
from typing import Any

import kopf
import pytest
import uvloop

from ucloud_operator import __main__ as entry


def test_the_operator_names_itself_without_a_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A UID without a passwd entry, as under containerd with the image's numeric USER.
    def no_such_user() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    handed: dict[str, Any] = {}

    async def fake_operator(**kwargs: Any) -> None:
        handed.update(kwargs)

    monkeypatch.setattr(getpass, "getuser", no_such_user)
    monkeypatch.setattr(kopf, "operator", fake_operator)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setattr(entry, "decode_kopf_streams", lambda: None)
    monkeypatch.setenv("POD_NAME", "ucloud-operator-7d9f-abcde")

    def run_coroutine(coroutine: Any) -> None:  # the fake operator finishes without awaiting
        with pytest.raises(StopIteration):
            coroutine.send(None)

    monkeypatch.setattr(uvloop, "run", run_coroutine)
    assert entry.main([]) == 0
    identity = handed["identity"]
    assert isinstance(identity, str) and identity.startswith("ucloud-operator-7d9f-abcde_")
