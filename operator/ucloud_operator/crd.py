"""The CustomResourceDefinition, generated from the pydantic models in `models.py`.

`python -m ucloud_operator.crd` prints it as YAML; `make crd` writes `manifests/crd.yaml` and a test
fails when the committed file drifts from the models. pydantic's JSON Schema is not a structural
schema, so `structural()` rewrites it: references inlined, `Optional` as `nullable`, `const` as
`enum`, open objects as `x-kubernetes-preserve-unknown-fields`, no titles, no null defaults.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from .models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    UCloudJob,
    UCloudJobSpec,
    UCloudJobStatus,
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {
        "name": "Running",
        "type": "integer",
        "jsonPath": ".status.runningReplicas",
        "description": "Replica pods running",
    },
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {
        "name": "Expires",
        "type": "string",
        "jsonPath": ".status.expiresAt",
        "description": "When the time allocation runs out",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
]


def crd() -> dict[str, Any]:
    root_rules = _extra(UCloudJob).get("x-kubernetes-validations", [])
    schema = {
        "type": "object",
        "description": "A UCloud-style job: replica pods run together, in UCloud's six states.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(UCloudJobSpec.model_json_schema(by_alias=True)),
            "status": structural(
                UCloudJobStatus.model_json_schema(by_alias=True, mode="serialization")
            ),
        },
        "x-kubernetes-validations": root_rules,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "ucloud"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn a pydantic JSON Schema into a Kubernetes structural schema."""
    definitions = schema.get("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged)
        if "anyOf" in node:
            variants = [v for v in node["anyOf"] if v != {"type": "null"}]
            if len(variants) == 1 and len(node["anyOf"]) == 2:
                rest = {k: v for k, v in node.items() if k != "anyOf"}
                return {**convert({**variants[0], **rest}), "nullable": True}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs"):
                continue
            if key == "default" and value in (None, [], {}):
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "additionalProperties":
                if value is True or value == {}:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                # additionalProperties: false cannot stand beside properties; pruning does it.
            elif key == "properties":
                out[key] = {name: convert(sub) for name, sub in value.items()}
            else:
                out[key] = convert(value)
        return out

    return dict(convert(schema))


def _extra(model: type[Any]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    return extra if isinstance(extra, dict) else {}


def render() -> str:
    header = (
        "# Generated from operator/ucloud_operator/models.py by `make crd`. Do not edit.\n"
        f"# {API_VERSION} {KIND}\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
