"""`kubectl ucloud`: a kubectl plugin for UCloudJobs (get, describe, logs, cancel, extend, wait).

Installed with the package as the `kubectl-ucloud` script, which kubectl finds on PATH. Flags go
after `ucloud` (kubectl hands a plugin only what follows its name). It reads the kubeconfig as
kubectl does (--kubeconfig, else KUBECONFIG, else ~/.kube/config; in a pod, the ServiceAccount)
and talks to the API server with the `kubernetes` client.

Split in two: what formats and decides (durations, tables, the describe text, the error
sentences, the exit codes) is plain functions of dicts, unit-tested without a cluster; `Kube` is
the one class that calls the API server.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .children import pod_name
from .models import (
    GROUP,
    JOB_NAME_LABEL,
    KIND,
    MAX_DEADLINE_SECONDS,
    PLURAL,
    SINGULAR,
    VERSION,
    JobState,
    UCloudJobStatus,
)

PROG = "kubectl ucloud"
RESOURCE = f"{PLURAL}.{GROUP}"  # as kubectl names it in its messages

EXIT_OK = 0
EXIT_ERROR = 1
# `wait`: the job's final state, or the timeout. An error (no such job, ...) is 1, as FAILURE.
WAIT_EXIT_CODES = {JobState.SUCCESS: 0, JobState.FAILURE: 1, JobState.EXPIRED: 2}
EXIT_TIMEOUT = 3

REQUEST_TIMEOUT = (10.0, 60.0)  # seconds: connect, read (a watch or `logs -f` reads longer)
WATCH_SECONDS = 60  # one watch request of `wait`, then a fresh read
CONFLICT_RETRIES = 5  # a patch made on a stale read (409) is read and tried again
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


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


def _duration_argument(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the API (`2025-01-02T03:04:05Z`), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


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


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _namespace(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


def _spec(job: dict[str, Any]) -> dict[str, Any]:
    return job.get("spec") or {}


def _replicas(job: dict[str, Any]) -> int:
    return int(_spec(job).get("replicas") or 1)


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
        total = status.replicas or _replicas(job)
        row = [
            _name(job),
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
            row.insert(0, _namespace(job))
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
    spec = _spec(job)
    status = job_status(job)
    metadata = job.get("metadata", {})
    deadline = spec.get("activeDeadlineSeconds")
    fields = [
        ("Name", _name(job)),
        ("Namespace", _namespace(job)),
        ("Created", timestamp(parse_time(metadata.get("creationTimestamp")), now)),
        ("Replicas", f"{status.running_replicas or 0}/{_replicas(job)} running"),
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
        self.seen: set[tuple[str, str, str | None]] | None = None  # None: nothing read yet
        self.last_state: JobState | None = None

    def show(self, job: dict[str, Any]) -> None:
        status = job_status(job)
        updates = [(u.timestamp.isoformat(), u.state, u.reason) for u in status.updates]
        if self.seen is None:  # the first read: where the job is now
            self.seen = set(updates)
            self._line(status.updates[-1].timestamp if status.updates else None, status)
        else:
            for update, key in zip(status.updates, updates, strict=True):
                if key not in self.seen:
                    self.seen.add(key)
                    self._print(update.timestamp, update.state, update.reason, update.message)
            if status.state is not None and status.state != self.last_state:
                self._line(None, status)  # a state without a history entry (an old status)
        self.last_state = status.state

    def _line(self, when: datetime | None, status: UCloudJobStatus) -> None:
        if status.state is None:
            self.out.write(f"{self.name}: no state yet (is the operator running?)\n")
        else:
            self._print(when, status.state, status.reason, status.message)
        self.out.flush()

    def _print(
        self, when: datetime | None, state: JobState, reason: str | None, message: str | None
    ) -> None:
        self.last_state = state
        words = [timestamp(when or datetime.now(UTC)), f"{self.name}", state]
        if reason:
            words.append(reason + (":" if message else ""))
        if message:
            words.append(message)
        self.out.write(" ".join(words) + "\n")
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


# --- the API server -----------------------------------------------------------------------------


class Kube:
    """Every call of the plugin to the API server; an error answer becomes a `CliError`."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.host = api_client.configuration.host

    def _call(
        self,
        verb: str,
        resource: str,
        call: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        all_namespaces: bool = False,
        what: str | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            return call(*args, **kwargs)
        except ApiException as error:
            raise api_error(
                error.status,
                error.reason,
                error.body,
                verb=verb,
                resource=resource,
                namespace=None if all_namespaces else self.namespace,
                name=name,
                what=what,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            cause = getattr(error, "reason", None) or error
            raise CliError(f"cannot reach the API server at {self.host}: {cause}") from None

    def get_job(self, name: str) -> dict[str, Any]:
        response = self._call(
            "get", RESOURCE, self.custom.get_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL, name,
            name=name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return _json(response)

    def list_jobs(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            call: Callable[..., Any] = self.custom.list_cluster_custom_object
            args: tuple[str, ...] = (GROUP, VERSION, PLURAL)
        else:
            call = self.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, self.namespace, PLURAL)
        response = self._call(
            "list", RESOURCE, call, *args,
            all_namespaces=all_namespaces,
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return sorted(items, key=lambda job: (_namespace(job), _name(job)))

    def patch_job(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch; with metadata.resourceVersion in it, ConflictError if the job changed."""
        response = self._call(
            "patch", RESOURCE, self.custom.patch_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL, name, patch,
            name=name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return _json(response)

    def watch_job(self, name: str, resource_version: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The watch events of one job, for at most `seconds`; ends early when the
        resourceVersion is too old (410), for the caller to read the job afresh."""
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self.custom.list_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=seconds,
            deserialize=False,
            _request_timeout=(REQUEST_TIMEOUT[0], seconds + 15),
        )  # fmt: skip
        while event := self._call("watch", RESOURCE, _next_event, stream):
            yield event

    def list_events(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        metadata = job.get("metadata", {})
        selector = (
            f"involvedObject.kind={KIND},involvedObject.name={metadata.get('name', '')},"
            f"involvedObject.uid={metadata.get('uid', '')}"
        )
        response = self._call(
            "list", "events", self.core.list_namespaced_event, self.namespace,
            field_selector=selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return _json(response).get("items") or []

    def get_pod(self, name: str) -> dict[str, Any]:
        response = self._call(
            "get", "pods", self.core.read_namespaced_pod, name, self.namespace,
            name=name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        return _json(response)

    def pod_log(
        self, name: str, container: str | None, *, follow: bool, tail: int | None
    ) -> Iterator[bytes]:
        """The container's log as it arrives."""
        what = f'read the log of pod "{name}"' + (f', container "{container}"' if container else "")
        response = self._call(
            "get", "pods/log", self.core.read_namespaced_pod_log, name, self.namespace,
            container=container, follow=follow, tail_lines=tail, what=what,
            _preload_content=False,
            _request_timeout=None if follow else REQUEST_TIMEOUT,  # a log may be quiet long
        )  # fmt: skip
        chunks = response.stream(65536, decode_content=True)  # each chunk as it comes
        try:
            while chunk := self._call("get", "pods/log", next, chunks, b"", what=what):
                yield chunk
        finally:
            response.release_conn()


def _next_event(stream: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The next watch event; None at the end, or when the resourceVersion is too old (410)."""
    try:
        return next(stream, None)
    except ApiException as error:
        if error.status == 410:
            return None
        raise


def _json(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.data)
    return parsed


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
    """The API client of the kubeconfig (or, in a pod and without a kubeconfig, of the pod's
    ServiceAccount) and the namespace: -n, else the context's, else "default"."""
    if kubeconfig and not os.path.exists(kubeconfig):
        raise CliError(f"kubeconfig {kubeconfig} does not exist")
    configuration = client.Configuration()
    default: str | None
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        chosen = (
            next((c for c in contexts if c.get("name") == context), None) if context else current
        )
        default = ((chosen or {}).get("context") or {}).get("namespace")
    except config.ConfigException as error:
        if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
            raise CliError(f"cannot load the kubeconfig: {error}") from None
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE) as file:
                default = file.read().strip()
        except OSError:
            default = None
    configuration.retries = False  # say at once that the API server cannot be reached
    return Kube(client.ApiClient(configuration), namespace or default or "default")


# --- the subcommands ----------------------------------------------------------------------------


def is_final(job: dict[str, Any]) -> bool:
    state = job_state(job)
    return state is not None and state.is_final


def _refuse_final(job: dict[str, Any], doing: str) -> None:
    status = job_status(job)
    if status.state is not None and status.state.is_final:
        reason = f" ({status.reason})" if status.reason else ""
        raise CliError(f'{SINGULAR} "{_name(job)}" is already {status.state}{reason}: {doing}')


def patch_spec(
    kube: Kube, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read the job; `change` checks it and gives its spec patch (None: nothing to do); patch
    the job only as read (its resourceVersion), else read it again. The job as read, and as
    patched (None when nothing was)."""
    for _ in range(CONFLICT_RETRIES):
        job = kube.get_job(name)
        spec = change(job)
        if spec is None:
            return job, None
        patch = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "spec": spec}
        try:
            return job, kube.patch_job(name, patch)
        except ConflictError:
            continue
    raise CliError(f'{SINGULAR} "{name}" kept changing while being patched; try again')


def cmd_get(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    if args.job and args.all_namespaces:
        raise CliError("a job cannot be named across all namespaces: leave out -A, or the name")
    jobs = [kube.get_job(args.job)] if args.job else kube.list_jobs(args.all_namespaces)
    if args.output in ("json", "yaml"):
        out.write(dump(jobs[0] if args.job else as_list(jobs), args.output))
        return EXIT_OK
    if not jobs:
        where = "any namespace" if args.all_namespaces else f'namespace "{kube.namespace}"'
        sys.stderr.write(f"No {PLURAL} found in {where}.\n")
        return EXIT_OK
    now = datetime.now(UTC)
    wide = args.output == "wide"
    out.write(get_table(jobs, now, wide=wide, all_namespaces=args.all_namespaces) + "\n")
    return EXIT_OK


def cmd_describe(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    job = kube.get_job(args.job)
    if args.output in ("json", "yaml"):
        out.write(dump(job, args.output))
        return EXIT_OK
    events: list[dict[str, Any]] | str
    try:
        events = kube.list_events(job)
    except CliError as error:  # the job is worth showing without its Events
        events = f"cannot list events: {error}"
    out.write(describe_text(job, events, datetime.now(UTC)) + "\n")
    return EXIT_OK


def cmd_logs(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    job = kube.get_job(args.job)
    replicas = _replicas(job)
    if not 0 <= args.rank < replicas:
        raise CliError(
            f'{SINGULAR} "{args.job}" has ranks 0..{replicas - 1}; there is no rank {args.rank}'
        )
    name = pod_name(args.job, args.rank)
    try:
        pod = kube.get_pod(name)
    except NotFoundError as error:
        raise CliError(
            f"{error}: replica {args.rank} has no pod (not created yet, or deleted: a "
            "cancelled job's pods are)"
        ) from None
    if (pod.get("metadata", {}).get("labels") or {}).get(JOB_NAME_LABEL) != args.job:
        raise CliError(f'pod "{name}" is not a replica of {SINGULAR} "{args.job}"')
    container = args.container or default_container(pod)
    out.flush()
    for chunk in kube.pod_log(name, container, follow=args.follow, tail=args.tail):
        out.buffer.write(chunk)
        out.buffer.flush()
    return EXIT_OK


def default_container(pod: dict[str, Any]) -> str | None:
    """As kubectl picks it: the pod's default-container annotation, else its first container
    (saying so when there are more)."""
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if annotations.get(DEFAULT_CONTAINER_ANNOTATION) in names:
        return str(annotations[DEFAULT_CONTAINER_ANNOTATION])
    if len(names) > 1:
        sys.stderr.write(f'Defaulted container "{names[0]}" out of: {", ".join(names)}\n')
    return names[0] if names else None


def cmd_cancel(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    def change(job: dict[str, Any]) -> dict[str, Any] | None:
        _refuse_final(job, "there is nothing to cancel")
        return None if _spec(job).get("cancel") else {"cancel": True}

    job, patched = patch_spec(kube, args.job, change)
    state = job_state(job) or "not yet handled by the operator"
    if patched is None:
        out.write(f"{SINGULAR}/{args.job}: cancel was already requested (state {state})\n")
    else:
        out.write(
            f"{SINGULAR}/{args.job}: cancel requested (was {state}); it goes CANCELING, then "
            "SUCCESS (Cancelled) once its pods are gone\n"
        )
    return EXIT_OK


def cmd_extend(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    def change(job: dict[str, Any]) -> dict[str, Any]:
        _refuse_final(job, "its deadline can no longer be extended")
        deadline = _spec(job).get("activeDeadlineSeconds")
        if not deadline:
            raise CliError(
                f'{SINGULAR} "{args.job}" has no deadline (spec.activeDeadlineSeconds) to '
                f"extend: it runs until it ends. To give it one: kubectl patch {SINGULAR} "
                f"{args.job} -n {kube.namespace} --type=merge "
                """-p '{"spec":{"activeDeadlineSeconds":3600}}'"""
            )
        if deadline + args.by > MAX_DEADLINE_SECONDS:
            raise CliError(
                f"{deadline}s + {args.by}s is more than the largest deadline, "
                f"{MAX_DEADLINE_SECONDS}s"
            )
        return {"activeDeadlineSeconds": deadline + args.by}

    job, patched = patch_spec(kube, args.job, change)
    assert patched is not None
    old, new = _spec(job)["activeDeadlineSeconds"], _spec(patched)["activeDeadlineSeconds"]
    started = job_status(job).started_at
    if started is not None:
        expires = datetime.fromtimestamp(started.timestamp() + new, UTC)
        until = f"expires at {timestamp(expires, datetime.now(UTC))}"
    else:
        until = "counted from when it first runs"
    out.write(f"{SINGULAR}/{args.job}: activeDeadlineSeconds {old} -> {new}; {until}\n")
    return EXIT_OK


def cmd_wait(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    deadline = time.monotonic() + args.timeout if args.timeout else math.inf
    printer = StatePrinter(out, f"{SINGULAR}/{args.job}")
    job = kube.get_job(args.job)
    printer.show(job)
    while not is_final(job):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sys.stderr.write(
                f"timed out after {human_duration(args.timeout)} waiting for "
                f"{SINGULAR}/{args.job} (state {job_state(job) or '<none>'})\n"
            )
            return EXIT_TIMEOUT
        seconds = max(1, math.ceil(min(remaining, WATCH_SECONDS)))
        for event in kube.watch_job(args.job, job["metadata"]["resourceVersion"], seconds):
            if event["type"] == "DELETED":
                raise CliError(f'{SINGULAR} "{args.job}" was deleted while waiting')
            if event["type"] in ("ADDED", "MODIFIED"):
                job = event["object"]
                printer.show(job)
                if is_final(job):
                    break
        else:  # the watch ended (its time, or too old a resourceVersion): read afresh
            job = kube.get_job(args.job)
            printer.show(job)
    state = job_state(job)
    assert state is not None
    return wait_exit_code(state)


COMMANDS: dict[str, Callable[[Kube, argparse.Namespace, TextIO], int]] = {
    "get": cmd_get,
    "describe": cmd_describe,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "extend": cmd_extend,
    "wait": cmd_wait,
}


# --- arguments ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """A usage error exits 1, as kubectl's do (2 is `wait`'s EXPIRED)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"error: {message}\n")


WAIT_EPILOG = """\
exit status:
  0  the job ended SUCCESS (Completed, NonZeroExit or Cancelled: see the reason)
  1  the job ended FAILURE, or an error (no such job, no rights, no API server)
  2  the job ended EXPIRED
  3  --timeout ran out first
"""

MAIN_EPILOG = """\
Flags go after `ucloud` (kubectl hands a plugin only what follows its name):
  kubectl ucloud get -A
  kubectl ucloud -n team-a describe gang
  kubectl ucloud logs gang --rank 2 -f
  kubectl ucloud extend timed --by 1h30m
  kubectl ucloud wait gang --timeout 2h && echo done

Exit status 0, or 1 with one line on stderr; `wait` has its own (kubectl ucloud wait --help).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="UCloudJobs (ucloudjobs.ucloud.dk) from kubectl: list, inspect, follow,\n"
        "cancel, extend and wait for jobs.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The connection flags go before or after the subcommand; the subcommand's copy sets
    # nothing unless given, so it cannot undo one given before it.
    shared = _Parser(add_help=False)
    for target, default in ((parser, None), (shared, argparse.SUPPRESS)):
        group = target.add_argument_group("connection")
        group.add_argument("--kubeconfig", default=default, help="kubeconfig file to use")
        group.add_argument("--context", default=default, help="kubeconfig context to use")
        group.add_argument(
            "-n",
            "--namespace",
            default=default,
            help="the namespace (default: the context's, else default)",
        )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, summary: str, description: str = "", **kwargs: Any
    ) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[shared],
            help=summary,
            description=description or summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    get = command(
        "get",
        "list jobs, or show one",
        "List jobs, or show one: NAME STATE REASON REPLICAS (running/total) AGE.",
    )
    get.add_argument("job", nargs="?", metavar="JOB", help="one job (default: all)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    get.add_argument(
        "-o",
        "--output",
        choices=("wide", "json", "yaml"),
        help="wide: also started, expires, finished, message; json/yaml: the objects",
    )

    describe = command(
        "describe",
        "show a job in full",
        "A job in full: its status, its replicas by rank (node, phase, exit code,\n"
        "signal, reason), its state history and its Events.",
    )
    describe.add_argument("job", metavar="JOB")
    describe.add_argument(
        "-o", "--output", choices=("json", "yaml"), help="print the job object instead"
    )

    logs = command(
        "logs",
        "print a replica's log",
        "The log of a replica's container: pod <job>-<rank>, rank 0 unless --rank.",
    )
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("--rank", type=int, default=0, help="the replica's rank (default 0)")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the log as it grows")
    logs.add_argument(
        "-c", "--container", help="the container (default: the pod's default, else its first)"
    )
    logs.add_argument("--tail", type=int, help="only the last TAIL lines")

    cancel = command(
        "cancel",
        "cancel a job",
        "Cancel a job: sets spec.cancel: true. The job goes CANCELING, then SUCCESS\n"
        "(Cancelled) once its pods are gone. Refused for a job already final.",
    )
    cancel.add_argument("job", metavar="JOB")

    extend = command(
        "extend",
        "give a job more time",
        "Raise a job's time allocation, spec.activeDeadlineSeconds, by a duration;\n"
        "status.expiresAt moves with it. Refused for a job without a deadline or\n"
        "already final.",
    )
    extend.add_argument("job", metavar="JOB")
    extend.add_argument(
        "--by",
        type=_duration_argument,
        required=True,
        metavar="DURATION",
        help="how much longer: 90s, 30m, 2h, 1h30m",
    )

    wait = command(
        "wait",
        "wait until a job is final",
        "Wait until a job is final (SUCCESS, FAILURE or EXPIRED), printing its state\n"
        "changes; the exit status says which.",
        epilog=WAIT_EPILOG,
    )
    wait.add_argument("job", metavar="JOB")
    wait.add_argument(
        "--timeout",
        type=_duration_argument,
        metavar="DURATION",
        help="give up after this long: 90s, 30m, 2h, 1h30m (default: wait for ever)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kube = connect(args.kubeconfig, args.context, args.namespace)
        return COMMANDS[args.command](kube, args, sys.stdout)
    except CliError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubectl ucloud logs gang | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
