"""Every file in manifests/examples/invalid/ is refused by the API server with its message, and
every example in manifests/examples/ is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cluster import ROOT, Cluster, kubectl

EXAMPLES = ROOT / "manifests" / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec_is_refused_with_its_message(
    path: Path, cluster: Cluster, kubectl_bin: str, kubeconfig: str
) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if len(documents) == 2:  # an update: create the original, then try the change
        original, update = (yaml.safe_dump(d) for d in documents)
        kubectl(
            kubectl_bin,
            kubeconfig,
            "create",
            "-n",
            cluster.namespace,
            "-f",
            "-",
            input_text=original,
        )
        result = kubectl(
            kubectl_bin,
            kubeconfig,
            "apply",
            "-n",
            cluster.namespace,
            "-f",
            "-",
            input_text=update,
            check=False,
        )
    else:
        result = kubectl(
            kubectl_bin, kubeconfig, "apply", "-n", cluster.namespace, "-f", str(path), check=False
        )
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert expected_message(path) in result.stderr, result.stderr


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_is_accepted(
    path: Path, cluster: Cluster, kubectl_bin: str, kubeconfig: str
) -> None:
    result = kubectl(
        kubectl_bin,
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-n",
        cluster.namespace,
        "-f",
        str(path),
        check=False,
    )
    assert result.returncode == 0, result.stderr
