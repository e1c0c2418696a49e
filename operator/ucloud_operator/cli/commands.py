"""The subcommands of `kubectl ucloud` and their arguments."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from ..children import pod_name
from ..models import JOB_NAME_LABEL, MAX_DEADLINE_SECONDS, PLURAL, SINGULAR
from .kube import Kube, connect
from .text import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    PROG,
    CliError,
    ConflictError,
    NotFoundError,
    StatePrinter,
    as_list,
    describe_text,
    dump,
    get_table,
    human_duration,
    is_final,
    job_state,
    job_status,
    name_of,
    parse_duration,
    replicas_of,
    spec_of,
    timestamp,
    wait_exit_code,
)

WATCH_SECONDS = 60  # one watch request of `wait`, then a fresh read
CONFLICT_RETRIES = 5  # a patch made on a stale read (409) is read and tried again
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def _duration_argument(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _refuse_final(job: dict[str, Any], doing: str) -> None:
    status = job_status(job)
    if status.state is not None and status.state.is_final:
        reason = f" ({status.reason})" if status.reason else ""
        raise CliError(f'{SINGULAR} "{name_of(job)}" is already {status.state}{reason}: {doing}')


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
    replicas = replicas_of(job)
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
        return None if spec_of(job).get("cancel") else {"cancel": True}

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
        deadline = spec_of(job).get("activeDeadlineSeconds")
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
    old, new = spec_of(job)["activeDeadlineSeconds"], spec_of(patched)["activeDeadlineSeconds"]
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
