"""Reading a UCloudJob body (as the watch delivers it) into the `Job` the rules take.

Total: a spec the models refuse gives `spec=None` with the error, which rule 3a turns into a
FAILURE; a status the models refuse is read as empty (the operator owns and rewrites it).
Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .models import UCloudJobSpec, UCloudJobStatus
from .state import Job

logger = logging.getLogger(__name__)


def read_job(body: Mapping[str, Any]) -> Job:
    meta = body.get("metadata") or {}
    spec: UCloudJobSpec | None = None
    spec_error = None
    try:
        spec = UCloudJobSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        spec_error = _short(error)
    try:
        status = UCloudJobStatus.model_validate(body.get("status") or {})
    except ValidationError as error:
        logger.warning(
            "unreadable status of %s/%s: %s", meta.get("namespace"), meta.get("name"), _short(error)
        )
        status = UCloudJobStatus()
    generation = meta.get("generation")
    return Job(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else 0,
        spec=spec,
        status=status,
        spec_error=spec_error,
    )


def _short(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'spec'}: {item['msg']}"
        for item in error.errors()[:5]
    )
