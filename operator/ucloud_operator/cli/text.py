"""What `kubectl ucloud` prints and decides, as plain functions of the API's dicts: durations,
kubectl's AGE, the tables, the describe text, -o json/yaml, wait's lines and exit codes, and the
sentence for an error answer of the API server. No API calls: unit-tested from canned jobs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from ..models import GROUP, PLURAL, SINGULAR, JobState, UCloudJobStatus
from ..replicas import parse_time

PROG = "kubectl ucloud"
RESOURCE = f"{PLURAL}.{GROUP}"  # as kubectl names it in its messages

EXIT_OK = 0
EXIT_ERROR = 1
# `wait`: the job's final state, or the timeout. An error (no such job, ...) is 1, as FAILURE.
WAIT_EXIT_CODES = {JobState.SUCCESS: 0, JobState.FAILURE: 1, JobState.EXPIRED: 2}
EXIT_TIMEOUT = 3


class CliError(Exception):
    """A sentence for stderr, and exit status 1. Never a traceback."""


class NotFoundError(CliError):
    """404: no such object."""


class ConflictError(CliError):
    """409: the object changed since it was read."""


# --- durations and times ------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> int:
    """Whole seconds of a duration written as Go and kubectl write them, in hours, minutes and
    seconds: `90s`, `30m`, `2h`, `1h30m`. More than zero."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"invalid duration {text!r}: use h, m and s, as in 90s, 30m, 2h, 1h30m")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"invalid duration {text!r}: must be more than zero")
    return total


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints an AGE (k8s.io/apimachinery's duration.HumanDuration)."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def since(when: datetime | None, now: datetime) -> str:
    """How long ago, as an AGE column; empty when not known."""
    return human_duration((now - when).total_seconds()) if when else ""


def relative(when: datetime | None, now: datetime) -> str:
    """`in 5m` for a time to come, `5m ago` for one past; empty when not known."""
    if when is None:
        return ""
    seconds = (when - now).total_seconds()
    return f"in {human_duration(seconds)}" if seconds > 0 else f"{human_duration(-seconds)} ago"


def timestamp(when: datetime | None, now: datetime | None = None) -> str:
    """RFC 3339 in UTC, with how long ago (or until) when `now` is given; `<none>` when unset."""
    if when is None:
        return "<none>"
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{text} ({relative(when, now)})" if now is not None else text


# --- reading a job ------------------------------------------------------------------------------


def job_status(job: dict[str, Any]) -> UCloudJobStatus:
    """The job's status as the API models read it. One this plugin cannot read (a newer
    operator's state, say) shows as a status with only a message saying so."""
    try:
        return UCloudJobStatus.model_validate(job.get("status") or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return UCloudJobStatus(message=f"(status not readable here: {where}: {first['msg']})")


def job_state(job: dict[str, Any]) -> JobState | None:
    return job_status(job).state


def name_of(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace_of(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


def spec_of(job: dict[str, Any]) -> dict[str, Any]:
    return job.get("spec") or {}


def replicas_of(job: dict[str, Any]) -> int:
    return int(spec_of(job).get("replicas") or 1)


def _cell(value: object) -> str:
    """A table cell: one line, empty for nothing."""
    return "" if value is None else " ".join(str(value).split())


# --- tables -------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns as kubectl aligns them (left, three spaces apart), without trailing blanks."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(indent + "   ".join(padded).rstrip())
    return "\n".join(lines)


def get_table(
    jobs: Sequence[dict[str, Any]], now: datetime, *, wide: bool, all_namespaces: bool
) -> str:
    """`kubectl ucloud get`: NAME STATE REASON REPLICAS (running/total) AGE; with -A the
    NAMESPACE first; with -o wide also STARTED, EXPIRES, FINISHED and MESSAGE."""
    headers = ["NAME", "STATE", "REASON", "REPLICAS", "AGE"]
    if wide:
        headers += ["STARTED", "EXPIRES", "FINISHED", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for job in jobs:
        status = job_status(job)
        created = parse_time(job.get("metadata", {}).get("creationTimestamp"))
        total = status.replicas or replicas_of(job)
        row = [
            name_of(job),
            _cell(status.state),
            _cell(status.reason),
            f"{status.running_replicas or 0}/{total}",
            since(created, now),
        ]
        if wide:
            row += [
                since(status.started_at, now),
                relative(status.expires_at, now),
                since(status.finished_at, now),
                _cell(status.message),
            ]
        if all_namespaces:
            row.insert(0, namespace_of(job))
        rows.append(row)
    return table(headers, rows)


def _event_time(event: dict[str, Any]) -> datetime | None:
    for field in ("lastTimestamp", "eventTime", "firstTimestamp"):
        when = parse_time(event.get(field))
        if when is not None:
            return when
    return parse_time(event.get("metadata", {}).get("creationTimestamp"))


def _event_order(event: dict[str, Any]) -> tuple[datetime, int]:
    """Oldest first; within a second, in the order the API server stored them."""
    version = str(event.get("metadata", {}).get("resourceVersion", ""))
    when = _event_time(event) or datetime.min.replace(tzinfo=UTC)
    return when, int(version) if version.isdigit() else 0


def events_table(events: Sequence[dict[str, Any]], now: datetime) -> str:
    """A job's Events, oldest first, as `kubectl describe` lists them."""
    rows = []
    for event in sorted(events, key=_event_order):
        age = since(_event_time(event), now)
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        if count > 1:
            first = parse_time(event.get("firstTimestamp"))
            age += f" (x{count} over {since(first, now)})" if first else f" (x{count})"
        source = event.get("source") or {}
        rows.append(
            [
                _cell(event.get("type")),
                _cell(event.get("reason")),
                age,
                _cell(source.get("component") or event.get("reportingComponent")),
                _cell(event.get("message") or event.get("note")),
            ]
        )
    return table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows, indent="  ")


def describe_text(
    job: dict[str, Any], events: Sequence[dict[str, Any]] | str, now: datetime
) -> str:
    """`kubectl ucloud describe`: the spec that matters, the status, the replicas by rank, the
    state history and the Events (or, as a string, why they could not be listed)."""
    spec = spec_of(job)
    status = job_status(job)
    metadata = job.get("metadata", {})
    deadline = spec.get("activeDeadlineSeconds")
    fields = [
        ("Name", name_of(job)),
        ("Namespace", namespace_of(job)),
        ("Created", timestamp(parse_time(metadata.get("creationTimestamp")), now)),
        ("Replicas", f"{status.running_replicas or 0}/{replicas_of(job)} running"),
        ("Deadline", f"{deadline}s ({human_duration(deadline)})" if deadline else "<none>"),
        ("Cancel", "requested" if spec.get("cancel") else "no"),
        ("State", status.state or "<none> (not handled by the operator yet)"),
        ("Reason", status.reason or "<none>"),
        ("Message", status.message or "<none>"),
        ("Started", timestamp(status.started_at, now)),
        ("Expires", timestamp(status.expires_at, now)),
        ("Finished", timestamp(status.finished_at, now)),
    ]
    lines = [f"{label + ':':<12}{value}" for label, value in fields]
    lines.append("Replica pods:")
    if status.replica_statuses:
        rows = [
            [
                str(r.rank),
                r.pod,
                _cell(r.node),
                _cell(r.phase),
                _cell(r.exit_code),
                _cell(r.signal),
                _cell(r.reason),
                _cell(r.message),
            ]
            for r in sorted(status.replica_statuses, key=lambda r: r.rank)
        ]
        headers = ["RANK", "POD", "NODE", "PHASE", "EXIT", "SIGNAL", "REASON", "MESSAGE"]
        lines.append(table(headers, rows, indent="  "))
    else:
        lines.append("  <none>")
    lines.append("History:")
    if status.updates:
        rows = [
            [timestamp(u.timestamp), u.state, _cell(u.reason), _cell(u.message)]
            for u in status.updates
        ]
        lines.append(table(["TIME", "STATE", "REASON", "MESSAGE"], rows, indent="  "))
    else:
        lines.append("  <none>")
    lines.append("Events:")
    if isinstance(events, str):
        lines.append(f"  <{events}>")
    elif events:
        lines.append(events_table(events, now))
    else:
        lines.append("  <none>")
    return "\n".join(lines)


def as_list(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several objects as `kubectl get -o json` prints them: a v1 List."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": list(items),
        "metadata": {"resourceVersion": ""},
    }


def dump(obj: dict[str, Any], output: str) -> str:
    """-o json (kubectl's four-space indent, keys sorted as Go sorts a map) or -o yaml."""
    if output == "yaml":
        return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True, allow_unicode=True)
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


# --- wait ---------------------------------------------------------------------------------------


def wait_exit_code(state: JobState) -> int:
    """`wait`'s exit status for a final state: 0 SUCCESS, 1 FAILURE, 2 EXPIRED."""
    return WAIT_EXIT_CODES[state]


class StatePrinter:
    """`wait`'s lines: the state the job is in, then every state change, from the job's history
    (status.updates), so a state passed between two reads (CANCELING) is shown too."""

    def __init__(self, out: TextIO, name: str) -> None:
        self.out = out
        self.name = name
        self.printed: set[tuple[datetime, JobState, str | None]] | None = None  # before a read
        self.state: JobState | None = None  # the last state printed

    def show(self, job: dict[str, Any]) -> None:
        status = job_status(job)
        entries = [((u.timestamp, u.state, u.reason), u) for u in status.updates]
        if self.printed is None:  # the first read: only where the job is now
            self.printed = {key for key, _ in entries}
            if status.state is None:
                self._write(f"{self.name}: no state yet (is the operator running?)")
                return
            last = status.updates[-1] if status.updates else None
            when = last.timestamp if last and last.state == status.state else None
            self._print(when, status.state, status.reason, status.message)
            return
        for key, update in entries:
            if key not in self.printed:
                self.printed.add(key)
                self._print(update.timestamp, update.state, update.reason, update.message)
        if status.state is not None and status.state != self.state:  # not in the history
            self._print(None, status.state, status.reason, status.message)

    def _print(
        self, when: datetime | None, state: JobState, reason: str | None, message: str | None
    ) -> None:
        self.state = state
        words = [timestamp(when or datetime.now(UTC)), self.name, str(state)]
        if reason:
            words.append(reason + (":" if message else ""))
        if message:
            words.append(message)
        self._write(" ".join(words))

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


# --- errors -------------------------------------------------------------------------------------


def _server_message(body: object) -> tuple[str, dict[str, Any]]:
    """The message and details of an API server error body (a metav1.Status), if it is one."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        parsed = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        return str(parsed.get("message") or ""), parsed.get("details") or {}
    return (str(body).strip() if body else ""), {}


def api_error(
    status: int | None,
    reason: str | None,
    body: object,
    *,
    verb: str,
    resource: str,
    namespace: str | None,
    name: str | None = None,
    what: str | None = None,
) -> CliError:
    """One sentence for an error answer of the API server to `verb` on `resource` (`what`: the
    action in words, for any other answer)."""
    message, details = _server_message(body)
    where = f' in namespace "{namespace}"' if namespace else " in any namespace"
    if status == 404 and resource == RESOURCE and not details:
        # Not a Status: the API server does not serve the group at all.
        return NotFoundError(
            f"the API server does not serve {RESOURCE}: is the UCloudJob CRD installed? "
            "(the Helm chart, or kubectl apply --server-side -f manifests/crd.yaml)"
        )
    if status == 404 and name:
        kind = SINGULAR if resource == RESOURCE else resource.partition("/")[0].removesuffix("s")
        return NotFoundError(f'{kind} "{name}" not found{where}')
    if status == 403:
        return CliError(
            f"forbidden: you may not {verb} {resource}{where}; ask for a Role that grants "
            f"{verb} on {resource} (server: {message})"
        )
    if status == 401:
        return CliError(
            f"unauthorized: the API server did not accept the kubeconfig's credentials ({message})"
        )
    said = message or reason or "no message"
    if status == 409:
        return ConflictError(said)
    return CliError(f"cannot {what or f'{verb} {resource}{where}'}: {said} ({status})")


def is_final(job: dict[str, Any]) -> bool:
    state = job_state(job)
    return state is not None and state.is_final
