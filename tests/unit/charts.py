"""Rendering the Helm chart, for the tests of the chart (test_chart.py, test_chart_conventions.py)
and their fixtures (conftest.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.binaries import control_plane_bin

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ucloud-operator"
RELEASE, NAMESPACE = "ucloud-operator", "ucloud-system"

Render = Callable[..., list[dict[str, Any]]]


def sets(*assignments: str) -> tuple[str, ...]:
    """`--set` arguments of helm, one per assignment."""
    return tuple(arg for assignment in assignments for arg in ("--set", assignment))


# No RBAC objects and a ServiceAccount of the user's: the chart renders no role at all.
NO_RBAC = sets("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=mine")


def kube_version() -> str:
    text = (ROOT / "hack" / "versions.env").read_text()
    match = re.search(r"^KUBE_VERSION=(\S+)$", text, re.MULTILINE)
    assert match, "KUBE_VERSION missing from hack/versions.env"
    return match.group(1)


def helm_binary() -> str:
    try:
        return str(control_plane_bin() / "helm")
    except (subprocess.CalledProcessError, FileNotFoundError) as error:  # pragma: no cover
        found = shutil.which("helm")
        if found is None:
            pytest.fail(f"no helm binary: hack/build-control-plane.sh failed ({error})")
        return found


def helm_template(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart, succeeded or not."""
    # --kube-version: a helm built from Go modules defaults to v1.20, below the chart's kubeVersion.
    command = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    command += ["--kube-version", kube_version(), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def template_text(helm: str, *args: str) -> str:
    result = helm_template(helm, *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def renderer(helm: str) -> Render:
    """`helm template` with the given arguments, as YAML documents."""

    def render(*args: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(template_text(helm, *args)) if doc]

    return render


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in kinds(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]
