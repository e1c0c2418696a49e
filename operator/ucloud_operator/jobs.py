"""Reading a UCloudJob body (as the watch delivers it) into the `Job` the rules take, and the
compact `StoredJob` the index keeps between passes.

Total: a spec the models refuse gives `spec=None` with the error, which rule 3a turns into a
FAILURE; a status the models refuse is read as empty (the operator owns and rewrites it).
Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .models import JobState, UCloudJobSpec, UCloudJobStatus
from .pod_policy import template_violations
from .rules import Job
from .wirejson import dumps, loads

_STATES = frozenset(JobState)


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A UCloudJob as the index keeps it: what a pass reads, as compact JSON, parsed by `job()`
    only when a pass needs it. A parsed job is about 9 KB in some 40 objects the garbage
    collector scans; this is about 1 KB in one, which at 10,000 jobs is the difference between
    a process of a few hundred MiB with long collector pauses and one of well under that."""

    namespace: str
    name: str
    state: JobState | None  # counted by the ucloud_jobs metric without parsing
    body: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> StoredJob:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        state = status.get("state") if isinstance(status, Mapping) else None
        state = JobState(state) if isinstance(state, str) and state in _STATES else None
        kept = {
            "metadata": {key: meta.get(key) for key in ("namespace", "name", "uid", "generation")},
            "spec": body.get("spec"),
            "status": status,
        }
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            state=state,
            body=dumps(kept),
        )

    def job(self) -> Job:
        return read_job(loads(self.body))


class ParsedJobs:
    """The jobs the latest passes parsed, each valid while the index holds the same
    `StoredJob`: the passes that a job's pod events cause between two of its own events parse
    it once. Bounded, so the index stays compact: a pass that misses parses again."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._parsed: OrderedDict[tuple[str, str], tuple[StoredJob, Job]] = OrderedDict()

    def job(self, stored: StoredJob) -> Job:
        key = (stored.namespace, stored.name)
        hit = self._parsed.get(key)
        if hit is not None and hit[0] is stored:
            self._parsed.move_to_end(key)
            return hit[1]
        job = stored.job()
        self._parsed[key] = (stored, job)
        self._parsed.move_to_end(key)
        if len(self._parsed) > self._size:
            self._parsed.popitem(last=False)
        return job

    def __len__(self) -> int:
        return len(self._parsed)


logger = logging.getLogger(__name__)


def read_job(body: Mapping[str, Any]) -> Job:
    meta = body.get("metadata") or {}
    spec: UCloudJobSpec | None = None
    spec_error = None
    raw_spec = body.get("spec") or {}
    try:
        spec = UCloudJobSpec.model_validate(raw_spec)
    except ValidationError as error:
        spec_error = _short(error)
    template = raw_spec.get("template") if isinstance(raw_spec, Mapping) else None
    # Checked once per job event on the template as written, not on every pass of the rules.
    violations = template_violations(template) if isinstance(template, Mapping) else []
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
        template_violations=tuple(violations),
    )


def _short(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'spec'}: {item['msg']}"
        for item in error.errors()[:5]
    )
