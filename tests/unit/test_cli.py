"""`kubectl ucloud` without a cluster: its arguments, durations, tables and describe text from
canned jobs, the error sentences, and the subcommands' decisions (wait's exit codes, cancel and
extend refusing) against a scripted stand-in for the API server."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from ucloud_operator.cli import commands, kube, text
from ucloud_operator.cli.commands import build_parser, main
from ucloud_operator.cli.text import (
    CliError,
    ConflictError,
    NotFoundError,
    StatePrinter,
    api_error,
    describe_text,
    get_table,
    human_duration,
    parse_duration,
    wait_exit_code,
)
from ucloud_operator.models import API_VERSION, JOB_NAME_LABEL, KIND, JobState

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def update(seconds_ago: float, state: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"timestamp": ts(seconds_ago), "state": state, "reason": reason, "message": message}


def canned_job(
    name: str = "gang",
    namespace: str = "team-a",
    *,
    replicas: int = 3,
    deadline: int | None = None,
    cancel: bool = False,
    status: dict[str, Any] | None = None,
    age: float = 600,
    resource_version: str = "100",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}},
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if cancel:
        spec["cancel"] = True
    job: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": resource_version,
            "creationTimestamp": ts(age),
        },
        "spec": spec,
    }
    if status is not None:
        job["status"] = status
    return job


RUNNING = {
    "state": "RUNNING",
    "reason": "AllReplicasRunning",
    "message": "3/3 replicas running",
    "replicas": 3,
    "runningReplicas": 3,
    "startedAt": ts(590),
    "expiresAt": ts(-3010),
    "updates": [
        update(600, "IN_QUEUE", "WaitingForReplicas", "0/3 replicas running"),
        update(590, "RUNNING", "AllReplicasRunning", "3/3 replicas running"),
    ],
}

FINISHED = {
    "state": "FAILURE",
    "reason": "NonZeroExit",
    "message": "replica 1 exited with code 3",
    "replicas": 2,
    "runningReplicas": 0,
    "startedAt": ts(3 * 3600),
    "finishedAt": ts(2 * 3600),
    "replicaStatuses": [
        {
            "rank": 1,
            "pod": "gang-1",
            "node": "node-b",
            "phase": "Failed",
            "exitCode": 3,
            "reason": "Error",
            "message": "boom",
        },
        {
            "rank": 0,
            "pod": "gang-0",
            "node": "node-a",
            "phase": "Deleted",
            "exitCode": 137,
            "signal": 9,
            "reason": "Killed",
        },
    ],
    "updates": [
        update(3 * 3600 + 5, "IN_QUEUE", "ContainerCreating", "creating"),
        update(3 * 3600, "RUNNING", "AllReplicasRunning", "2/2 replicas running"),
        update(2 * 3600, "FAILURE", "NonZeroExit", "replica 1 exited with code 3"),
    ],
}


# --- arguments ------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_connection_flags_go_before_or_after_the_subcommand() -> None:
    before = parse("--kubeconfig", "/k", "--context", "c", "-n", "a", "get")
    after = parse("get", "--kubeconfig", "/k", "--context", "c", "-n", "a")
    for args in (before, after):
        assert (args.kubeconfig, args.context, args.namespace) == ("/k", "c", "a")
    # A subcommand that does not repeat a flag keeps the one given before it.
    assert parse("-n", "a", "describe", "gang").namespace == "a"
    assert parse("-n", "a", "describe", "gang", "--namespace", "b").namespace == "b"
    assert parse("get").namespace is None


def test_the_subcommands_arguments() -> None:
    get = parse("get", "-A", "-o", "wide")
    assert (get.command, get.job, get.all_namespaces, get.output) == ("get", None, True, "wide")
    assert parse("get", "gang", "-o", "json").job == "gang"
    assert parse("describe", "gang", "-o", "yaml").output == "yaml"
    logs = parse("logs", "gang")
    assert (logs.rank, logs.follow, logs.container, logs.tail) == (0, False, None, None)
    logs = parse("logs", "gang", "--rank", "2", "-f", "-c", "side", "--tail", "5")
    assert (logs.rank, logs.follow, logs.container, logs.tail) == (2, True, "side", 5)
    assert parse("cancel", "gang").job == "gang"
    assert parse("extend", "gang", "--by", "1h30m").by == 5400
    assert parse("wait", "gang").timeout is None
    assert parse("wait", "gang", "--timeout", "90s").timeout == 90


@pytest.mark.parametrize(
    "argv",
    [
        ["extend", "gang"],  # --by is required
        ["extend", "gang", "--by", "90"],  # a duration needs its unit
        ["wait", "gang", "--timeout", "soon"],
        ["get", "-o", "table"],
        ["describe"],  # the job is required
        ["bogus"],
        [],
    ],
)
def test_a_usage_error_exits_1_with_a_sentence(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 1  # not 2: that is wait's EXPIRED
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["get", "describe", "logs", "cancel", "extend", "wait"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(command, "--help")
    assert exited.value.code == 0
    assert f"kubectl ucloud {command}" in capsys.readouterr().out


def test_the_help_documents_wait_s_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    top = capsys.readouterr().out
    assert all(c in top for c in ("get", "describe", "logs", "cancel", "extend", "wait"))
    with pytest.raises(SystemExit):
        parse("wait", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    for line in (
        "0 the job ended SUCCESS",
        "1 the job ended FAILURE",
        "2 the job ended EXPIRED",
        "3 --timeout ran out first",
    ):
        assert line in help_text


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h0m5s", 3605),
        ("10m30s", 630),
        (" 45s ", 45),
        ("100h", 360000),
    ],
)
def test_a_duration_in_hours_minutes_and_seconds(written: str, seconds: int) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["", "90", "1d", "1.5h", "-5m", "0s", "0h0m", "30m1h", "h"])
def test_a_duration_that_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(written)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600 + 60, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3600, "2d1h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
    ],
)
def test_an_age_as_kubectl_prints_it(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


# --- get ----------------------------------------------------------------------------------------


def test_the_table_of_jobs() -> None:
    jobs = [
        canned_job("gang", status=RUNNING, deadline=3600),
        canned_job("fresh", replicas=2, age=3),  # not handled by the operator yet
    ]
    assert get_table(jobs, NOW, wide=False, all_namespaces=False).splitlines() == [
        "NAME    STATE     REASON               REPLICAS   AGE",
        "gang    RUNNING   AllReplicasRunning   3/3        10m",
        "fresh                                  0/2        3s",
    ]


def test_the_wide_table_of_every_namespace() -> None:
    jobs = [
        canned_job("gang", "team-a", status=RUNNING, deadline=3600),
        canned_job("gang", "team-b", replicas=2, status=FINISHED, age=4 * 3600),
    ]
    lines = get_table(jobs, NOW, wide=True, all_namespaces=True).splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "STATE",
        "REASON",
        "REPLICAS",
        "AGE",
        "STARTED",
        "EXPIRES",
        "FINISHED",
        "MESSAGE",
    ]
    assert lines[1].split() == [
        "team-a",
        "gang",
        "RUNNING",
        "AllReplicasRunning",
        "3/3",
        "10m",
        "9m50s",
        "in",
        "50m",
        "3/3",
        "replicas",
        "running",
    ]
    assert lines[2].split() == [
        "team-b",
        "gang",
        "FAILURE",
        "NonZeroExit",
        "0/2",
        "4h",
        "3h",
        "120m",
        "replica",
        "1",
        "exited",
        "with",
        "code",
        "3",
    ]
    # The columns line up: every cell starts where its header does.
    start = lines[0].index("MESSAGE")
    assert lines[1][start:] == "3/3 replicas running"


def test_a_status_this_plugin_cannot_read_still_shows() -> None:
    job = canned_job(status={"state": "PAUSED", "reason": "SomethingNew"})
    row = get_table([job], NOW, wide=True, all_namespaces=False).splitlines()[1]
    assert "status not readable here: state" in row


def test_json_and_yaml_as_kubectl_prints_them() -> None:
    job = canned_job(status=RUNNING)
    printed = text.dump(text.as_list([job]), "json")
    assert printed.startswith('{\n    "apiVersion": "v1",\n    "items": [')
    assert json.loads(printed)["items"] == [job]
    assert json.loads(printed)["kind"] == "List"
    assert yaml.safe_load(text.dump(job, "yaml")) == job


# --- describe -----------------------------------------------------------------------------------


def event(reason: str, seconds_ago: float, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"resourceVersion": str(1000 - int(seconds_ago))},
        "type": "Normal",
        "reason": reason,
        "message": message,
        "lastTimestamp": ts(seconds_ago),
        "source": {"component": "ucloud-operator"},
        **fields,
    }


def test_describe_shows_status_replicas_by_rank_history_and_events() -> None:
    job = canned_job(replicas=2, deadline=7200, status=FINISHED, age=4 * 3600)
    events = [
        event("NonZeroExit", 7200, "RUNNING -> FAILURE: replica 1 exited with code 3"),
        event("AllReplicasRunning", 3 * 3600, "IN_QUEUE -> RUNNING: 2/2 replicas running"),
        event("Retried", 7300, "again", count=3, firstTimestamp=ts(7500)),
    ]
    described = describe_text(job, events, NOW)
    lines = described.splitlines()
    assert "Name:       gang" in lines and "Namespace:  team-a" in lines
    assert "Deadline:   7200s (120m)" in lines
    assert "State:      FAILURE" in lines and "Reason:     NonZeroExit" in lines
    assert "Finished:   2025-03-01T10:00:00Z (120m ago)" in lines
    replicas = lines[lines.index("Replica pods:") + 1 : lines.index("History:")]
    assert replicas[0].split() == [
        "RANK",
        "POD",
        "NODE",
        "PHASE",
        "EXIT",
        "SIGNAL",
        "REASON",
        "MESSAGE",
    ]
    assert replicas[1].split() == ["0", "gang-0", "node-a", "Deleted", "137", "9", "Killed"]
    assert replicas[2].split() == ["1", "gang-1", "node-b", "Failed", "3", "Error", "boom"]
    history = lines[lines.index("History:") + 2 : lines.index("Events:")]
    assert [row.split()[1] for row in history] == ["IN_QUEUE", "RUNNING", "FAILURE"]
    shown = lines[lines.index("Events:") + 2 :]
    assert [row.split()[1] for row in shown] == ["AllReplicasRunning", "Retried", "NonZeroExit"]
    assert "121m (x3 over 125m)" in shown[1]


def test_describe_a_job_the_operator_has_not_seen_and_events_not_listed() -> None:
    described = describe_text(canned_job(), "cannot list events: forbidden", NOW)
    assert "State:      <none> (not handled by the operator yet)" in described
    assert "Replica pods:\n  <none>\nHistory:\n  <none>" in described
    assert described.endswith("Events:\n  <cannot list events: forbidden>")


# --- errors -------------------------------------------------------------------------------------


def status_body(code: int, reason: str, message: str, **details: Any) -> str:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        }
    )


def test_no_such_job() -> None:
    body = status_body(404, "NotFound", 'ucloudjobs.ucloud.dk "x" not found', name="x")
    error = api_error(
        404, "Not Found", body, verb="get", resource="ucloudjobs.ucloud.dk", namespace="y", name="x"
    )
    assert isinstance(error, NotFoundError)
    assert str(error) == 'ucloudjob "x" not found in namespace "y"'


def test_no_crd() -> None:
    error = api_error(
        404,
        "Not Found",
        "404 page not found\n",
        verb="list",
        resource="ucloudjobs.ucloud.dk",
        namespace="y",
    )
    assert "is the UCloudJob CRD installed?" in str(error)


def test_no_rights_says_which_verb_on_which_resource() -> None:
    server = (
        'ucloudjobs.ucloud.dk "x" is forbidden: User "bob" cannot patch resource "ucloudjobs" '
        'in API group "ucloud.dk" in the namespace "y"'
    )
    error = api_error(
        403,
        "Forbidden",
        status_body(403, "Forbidden", server),
        verb="patch",
        resource="ucloudjobs.ucloud.dk",
        namespace="y",
        name="x",
    )
    assert str(error).startswith(
        'forbidden: you may not patch ucloudjobs.ucloud.dk in namespace "y"; ask for a Role'
    )
    assert server in str(error)
    everywhere = api_error(
        403, "Forbidden", b"{}", verb="list", resource="ucloudjobs.ucloud.dk", namespace=None
    )
    assert "you may not list ucloudjobs.ucloud.dk in any namespace" in str(everywhere)


def test_other_answers() -> None:
    conflict = api_error(409, "Conflict", "{}", verb="patch", resource="r", namespace="y")
    assert isinstance(conflict, ConflictError)
    logs = api_error(
        400,
        "Bad Request",
        status_body(400, "BadRequest", 'no logs found for container "main"'),
        verb="get",
        resource="pods/log",
        namespace="y",
        what='read the log of pod "gang-0"',
    )
    assert (
        str(logs) == 'cannot read the log of pod "gang-0": no logs found for container "main" (400)'
    )


def write_kubeconfig(path: Path, server: str = "https://127.0.0.1:1") -> Path:
    """A kubeconfig of two contexts: `a` (namespace team-a, current) and `b` (no namespace)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    return path


def test_the_namespace_is_the_flag_else_the_context_s_else_default(tmp_path: Path) -> None:
    config = str(write_kubeconfig(tmp_path / "config"))
    assert kube.connect(config, None, None).namespace == "team-a"
    assert kube.connect(config, None, "mine").namespace == "mine"
    assert kube.connect(config, "b", None).namespace == "default"
    assert kube.connect(config, "a", None).host == "https://127.0.0.1:1"


def test_a_bad_kubeconfig_or_context_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="kubeconfig /nowhere does not exist"):
        kube.connect("/nowhere", None, None)
    config = str(write_kubeconfig(tmp_path / "config"))
    with pytest.raises(CliError, match="cannot load the kubeconfig"):
        kube.connect(config, "nope", None)


def test_an_unreachable_api_server_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_kubeconfig(tmp_path / "config"))  # nothing listens on port 1
    assert main(["--kubeconfig", config, "get"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the API server at https://127.0.0.1:1: ")
    assert "Traceback" not in err and err.count("\n") == 1


# --- the subcommands, against a scripted API server ---------------------------------------------


class FakeKube:
    """The API server as the subcommands call it: `jobs` are the successive reads of the job;
    `watches` the events of each watch (a watch with none just ends)."""

    namespace = "team-a"

    def __init__(
        self,
        *jobs: dict[str, Any],
        watches: list[list[dict[str, Any]]] | None = None,
        conflicts: int = 0,
    ) -> None:
        self.jobs = list(jobs)
        self.watches = watches or []
        self.conflicts = conflicts
        self.patches: list[dict[str, Any]] = []

    def get_job(self, name: str) -> dict[str, Any]:
        return self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0]

    def patch_job(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        if self.conflicts:
            self.conflicts -= 1
            raise ConflictError("the object has been modified")
        patched = json.loads(json.dumps(self.jobs[0]))
        patched["spec"].update(patch["spec"])
        return cast(dict[str, Any], patched)

    def watch_job(self, name: str, resource_version: str, seconds: int) -> Iterator[dict[str, Any]]:
        yield from self.watches.pop(0) if self.watches else []


def run(fake: FakeKube, *argv: str) -> tuple[int, str]:
    args = parse(*argv)
    out = io.StringIO()
    code = commands.COMMANDS[args.command](cast(Any, fake), args, out)
    return code, out.getvalue()


def modified(job: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": job}


def with_state(state: str, reason: str, *updates: dict[str, Any], **job: Any) -> dict[str, Any]:
    status = {
        "state": state,
        "reason": reason,
        "message": f"{reason} message",
        "updates": list(updates),
    }
    return canned_job(status=status, **job)


@pytest.mark.parametrize(
    ("state", "code"), [(JobState.SUCCESS, 0), (JobState.FAILURE, 1), (JobState.EXPIRED, 2)]
)
def test_wait_exit_codes(state: JobState, code: int) -> None:
    assert wait_exit_code(state) == code
    queued = update(30, "IN_QUEUE", "WaitingForReplicas")
    running = update(20, "RUNNING", "AllReplicasRunning")
    final = update(10, state, "Reason")
    fake = FakeKube(
        with_state("IN_QUEUE", "WaitingForReplicas", queued),
        # A watch sees RUNNING; the next ends without an event, and a fresh read sees the end.
        watches=[[modified(with_state("RUNNING", "AllReplicasRunning", queued, running))], []],
    )
    fake.jobs.append(with_state(state, "Reason", queued, running, final))
    exit_code, printed = run(fake, "wait", "gang")
    assert exit_code == code
    assert [line.split()[2] for line in printed.splitlines()] == ["IN_QUEUE", "RUNNING", state]


def test_wait_shows_a_state_passed_between_two_reads() -> None:
    running = update(20, "RUNNING", "AllReplicasRunning")
    canceling = update(10, "CANCELING", "CancelRequested", "cancel requested")
    cancelled = update(9, "SUCCESS", "Cancelled", "cancelled by the user")
    fake = FakeKube(
        with_state("RUNNING", "AllReplicasRunning", running),
        watches=[
            [
                {
                    "type": "MODIFIED",
                    "object": with_state("SUCCESS", "Cancelled", running, canceling, cancelled),
                }
            ]
        ],
    )
    code, printed = run(fake, "wait", "gang")
    assert code == 0
    assert printed.splitlines() == [
        f"{ts(20)} ucloudjob/gang RUNNING AllReplicasRunning: AllReplicasRunning message",
        f"{ts(10)} ucloudjob/gang CANCELING CancelRequested: cancel requested",
        f"{ts(9)} ucloudjob/gang SUCCESS Cancelled: cancelled by the user",
    ]


def test_wait_for_a_final_job_returns_at_once() -> None:
    fake = FakeKube(with_state("EXPIRED", "DeadlineExceeded", update(5, "EXPIRED", "X")))
    assert run(fake, "wait", "gang")[0] == 2


def test_wait_times_out_with_3(capsys: pytest.CaptureFixture[str]) -> None:
    class Slow(FakeKube):
        def watch_job(
            self, name: str, resource_version: str, seconds: int
        ) -> Iterator[dict[str, Any]]:
            assert seconds == 1  # never longer than what is left of --timeout
            time.sleep(0.2)
            yield from []

    fake = Slow(canned_job())  # the operator never handles it
    code, printed = run(fake, "wait", "gang", "--timeout", "1s")
    assert code == 3
    assert printed == "ucloudjob/gang: no state yet (is the operator running?)\n"
    assert "timed out after 1s waiting for ucloudjob/gang (state <none>)" in capsys.readouterr().err


def test_wait_for_a_deleted_job_is_an_error() -> None:
    fake = FakeKube(canned_job(), watches=[[{"type": "DELETED", "object": canned_job()}]])
    with pytest.raises(CliError, match='ucloudjob "gang" was deleted while waiting'):
        run(fake, "wait", "gang")


def test_state_printer_prints_the_current_state_once() -> None:
    out = io.StringIO()
    printer = StatePrinter(out, "ucloudjob/gang")
    job = canned_job(status=RUNNING)
    printer.show(job)
    printer.show(job)
    assert out.getvalue().count("\n") == 1


def test_cancel_sets_spec_cancel_on_the_job_as_read() -> None:
    fake = FakeKube(with_state("RUNNING", "AllReplicasRunning"), conflicts=1)
    code, printed = run(fake, "cancel", "gang")
    assert code == 0
    assert "cancel requested (was RUNNING)" in printed
    # A conflict (409): read again, patch again; always with the resourceVersion read.
    assert fake.patches == [{"metadata": {"resourceVersion": "100"}, "spec": {"cancel": True}}] * 2


def test_cancel_twice_patches_nothing() -> None:
    fake = FakeKube(with_state("CANCELING", "CancelRequested", cancel=True))
    code, printed = run(fake, "cancel", "gang")
    assert (code, fake.patches) == (0, [])
    assert "cancel was already requested (state CANCELING)" in printed


@pytest.mark.parametrize("state", ["SUCCESS", "FAILURE", "EXPIRED"])
def test_cancel_and_extend_refuse_a_final_job(state: str) -> None:
    fake = FakeKube(with_state(state, "Why", deadline=60))
    with pytest.raises(CliError, match=f'ucloudjob "gang" is already {state} \\(Why\\)'):
        run(fake, "cancel", "gang")
    with pytest.raises(CliError, match="its deadline can no longer be extended"):
        run(fake, "extend", "gang", "--by", "1h")
    assert fake.patches == []


def test_extend_raises_the_deadline() -> None:
    job = with_state("RUNNING", "AllReplicasRunning", deadline=600)
    job["status"]["startedAt"] = ts(100)
    fake = FakeKube(job)
    code, printed = run(fake, "extend", "gang", "--by", "30m")
    assert code == 0
    assert fake.patches[0]["spec"] == {"activeDeadlineSeconds": 2400}
    expires = (NOW - timedelta(seconds=100) + timedelta(seconds=2400)).strftime("%H:%M:%SZ")
    assert "activeDeadlineSeconds 600 -> 2400; expires at" in printed and expires in printed


def test_extend_without_a_deadline_says_how_to_set_one() -> None:
    fake = FakeKube(with_state("RUNNING", "AllReplicasRunning"))
    with pytest.raises(CliError) as refused:
        run(fake, "extend", "gang", "--by", "1h")
    assert "has no deadline (spec.activeDeadlineSeconds)" in str(refused.value)
    assert """kubectl patch ucloudjob gang -n team-a --type=merge""" in str(refused.value)


def test_extend_beyond_the_largest_deadline() -> None:
    fake = FakeKube(with_state("RUNNING", "AllReplicasRunning", deadline=2**31 - 100))
    with pytest.raises(CliError, match="more than the largest deadline"):
        run(fake, "extend", "gang", "--by", "1h")


def test_logs_of_a_rank_the_job_does_not_have() -> None:
    fake = FakeKube(canned_job(replicas=2))
    with pytest.raises(CliError, match=r'ucloudjob "gang" has ranks 0\.\.1; there is no rank 2'):
        run(fake, "logs", "gang", "--rank", "2")


def test_logs_of_a_replica_without_a_pod_or_of_a_foreign_pod() -> None:
    class NoPod(FakeKube):
        def get_pod(self, name: str) -> dict[str, Any]:
            raise NotFoundError(f'pod "{name}" not found in namespace "team-a"')

    with pytest.raises(CliError, match="replica 0 has no pod"):
        run(NoPod(canned_job()), "logs", "gang")

    class Foreign(FakeKube):
        def get_pod(self, name: str) -> dict[str, Any]:
            return {"metadata": {"name": name, "labels": {JOB_NAME_LABEL: "other"}}}

    with pytest.raises(CliError, match='pod "gang-0" is not a replica of ucloudjob "gang"'):
        run(Foreign(canned_job()), "logs", "gang")


def test_the_default_container_as_kubectl_picks_it(capsys: pytest.CaptureFixture[str]) -> None:
    def pod(*names: str, annotated: str | None = None) -> dict[str, Any]:
        annotations = {commands.DEFAULT_CONTAINER_ANNOTATION: annotated} if annotated else {}
        return {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": n} for n in names]},
        }

    assert commands.default_container(pod("main")) == "main"
    assert commands.default_container(pod("main", "side", annotated="side")) == "side"
    assert capsys.readouterr().err == ""
    assert commands.default_container(pod("main", "side")) == "main"
    assert capsys.readouterr().err == 'Defaulted container "main" out of: main, side\n'


def test_main_prints_an_error_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_such_job(*_: Any) -> Any:
        raise NotFoundError('ucloudjob "x" not found in namespace "y"')

    monkeypatch.setattr(commands, "connect", lambda *_: FakeKube(canned_job()))
    monkeypatch.setitem(commands.COMMANDS, "describe", no_such_job)
    assert main(["describe", "x"]) == 1
    assert capsys.readouterr().err == 'error: ucloudjob "x" not found in namespace "y"\n'
