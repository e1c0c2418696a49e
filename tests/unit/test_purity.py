"""The pure modules stay pure: importing them, and everything they import, loads no kopf, no HTTP
client and no Kubernetes client. Checked in a fresh interpreter, so what the test session
already imported cannot hide an import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "operator"

# The decisions and what they read: the rules, the status builder, the pod and node summaries,
# the gangs' verdicts, the pod, Service and PodGroup builders, the template policy, the job
# reader and the API models.
PURE_MODULES = (
    "rules",
    "status",
    "replicas",
    "nodes",
    "gangs",
    "children",
    "pod_policy",
    "jobs",
    "models",
)
SHELL_LIBRARIES = ("kopf", "aiohttp", "kubernetes")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by(module: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing `module`."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SOURCE_ROOT)},
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_module_loads_no_shell_library(module: str) -> None:
    shell = loaded_by(f"ucloud_operator.{module}") & set(SHELL_LIBRARIES)
    assert not shell, f"ucloud_operator.{module} imports {sorted(shell)}"


def test_the_check_sees_a_shell_import() -> None:
    # The handlers are the kopf shell: if this finds nothing, the check above proves nothing.
    assert {"kopf", "kubernetes"} <= loaded_by("ucloud_operator.handlers")
