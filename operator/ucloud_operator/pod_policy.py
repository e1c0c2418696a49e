"""The operator's own pod policy: what a replica template may not ask for (rule 3a,
`TemplateNotAllowed`). It guards clusters where the chart's admission policy is not installed.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def template_violations(template: Mapping[str, Any]) -> list[str]:
    """Every reason the template is refused, in a stable order; empty when it is allowed."""
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        return []
    found: list[str] = []
    for field in _HOST_NAMESPACES:
        if spec.get(field) is True:
            found.append(f"spec.{field} is true (host namespaces are not allowed)")
    for index, volume in enumerate(_items(spec.get("volumes"))):
        if volume.get("hostPath") is not None:
            name = volume.get("name", index)
            found.append(f"volume {name!r} is a hostPath volume (not allowed)")
    for field in _CONTAINER_LISTS:
        for container in _items(spec.get(field)):
            context = container.get("securityContext")
            if isinstance(context, Mapping) and context.get("privileged") is True:
                name = container.get("name", "?")
                found.append(f"container {name!r} is privileged (not allowed)")
    return found


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
