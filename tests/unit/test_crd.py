"""The CRD is generated from the models: drift, structure, columns and CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ucloud_operator.crd import crd, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / "manifests" / "crd.yaml").read_text()
    assert committed == render(), "manifests/crd.yaml drifted from the models: run `make crd`"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += walk(value, f"{path}[{index}]")
    return found


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        for forbidden in ("$ref", "$defs", "anyOf", "allOf", "title", "const"):
            assert forbidden not in node, f"{forbidden} at {path}"
        assert not ("additionalProperties" in node and "properties" in node), path
        if "properties" in node:
            assert node.get("type") == "object", f"untyped object at {path}"


def test_status_subresource_short_names_and_columns() -> None:
    definition = crd()["spec"]
    version = definition["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert definition["names"]["shortNames"] == ["ujob", "ujobs"]
    columns = [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [("State", 0), ("Running", 0), ("Replicas", 0), ("Expires", 0),
                       ("Age", 0), ("Reason", 1)]


def test_cel_rules_cover_every_invalid_spec_of_the_contract() -> None:
    rules = [r["rule"] for _, node in walk(schema())
             for r in node.get("x-kubernetes-validations", [])]
    assert "self.replicas == oldSelf.replicas" in rules
    assert "self.template == oldSelf.template" in rules
    assert "!oldSelf.cancel || self.cancel" in rules
    assert any("metadata.name.size() <= 59" in rule for rule in rules)
    assert any("metadata.name.matches" in rule for rule in rules)
    spec = schema()["properties"]["spec"]["properties"]
    assert (spec["replicas"]["minimum"], spec["replicas"]["maximum"]) == (1, 1000)
    assert spec["activeDeadlineSeconds"]["minimum"] == 1
    pod_spec = spec["template"]["properties"]["spec"]
    assert pod_spec["properties"]["containers"]["minItems"] == 1
    assert pod_spec["properties"]["restartPolicy"]["enum"] == ["Never"]


def test_render_is_yaml_of_the_crd() -> None:
    assert yaml.safe_load(render()) == crd()
