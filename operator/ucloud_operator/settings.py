"""Operator settings: command-line flags, each with an environment fallback."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from . import __version__, gangs
from .rules import Settings


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...]  # empty: every namespace
    image_pull_grace: float
    pod_policy: bool
    log_level: str
    log_format: str
    workers: int
    api_concurrency: int
    instance: str
    metrics_address: str = ":8080"
    health_address: str = ":8081"
    leader_elect: bool = False
    lease_namespace: str = "default"
    lease_name: str = "ucloud-operator"
    node_lost_grace: float = 60.0
    metrics_secure: bool = False
    metrics_cert_dir: str = ""  # empty: a self-signed certificate made at start
    gang_admission: str = "auto"  # auto, on or off: see --gang-admission
    # Settings given by a deprecated name, each a sentence for the log.
    deprecated: tuple[str, ...] = ()

    @property
    def rules(self) -> Settings:
        return Settings(
            image_pull_grace=timedelta(seconds=self.image_pull_grace),
            forbid_privileged_templates=self.pod_policy,
            node_lost_grace=timedelta(seconds=self.node_lost_grace),
        )


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    return environ.get(name) or default


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


# The environment variable of each flag. Their values are parsed as the flags are, before the
# command line (which wins), so a bad value gets the same clear message, naming the variable.
ENV_FLAGS = {
    "UCLOUD_IMAGE_PULL_GRACE": "--image-pull-grace",
    "UCLOUD_NODE_LOST_GRACE": "--node-lost-grace",
    "UCLOUD_POD_POLICY": "--pod-policy",
    "UCLOUD_LOG_LEVEL": "--log-level",
    "UCLOUD_LOG_FORMAT": "--log-format",
    "UCLOUD_WORKERS": "--workers",
    "UCLOUD_API_THREADS": "--api-concurrency",  # its old name; the new one below wins
    "UCLOUD_API_CONCURRENCY": "--api-concurrency",
    "UCLOUD_METRICS_ADDRESS": "--metrics-address",
    "UCLOUD_HEALTH_ADDRESS": "--health-address",
    "UCLOUD_METRICS_SECURE": "--metrics-secure",
    "UCLOUD_METRICS_CERT_DIR": "--metrics-cert-dir",
    "UCLOUD_LEADER_ELECT": "--leader-elect",
    "UCLOUD_LEASE_NAMESPACE": "--lease-namespace",
    "UCLOUD_LEASE_NAME": "--lease-name",
    "UCLOUD_GANG_ADMISSION": "--gang-admission",
}
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
# The on/off flags (argparse's BooleanOptionalAction): their variables take one of those words.
_SWITCHES = ("--leader-elect", "--metrics-secure")
# The files of --metrics-cert-dir, named as in a Secret of type kubernetes.io/tls.
CERT_FILES = ("tls.crt", "tls.key")

# Old names still read, and what replaced them.
_OLD_FLAGS = {"--api-threads": "--api-concurrency"}
_OLD_ENV = {"UCLOUD_API_THREADS": "UCLOUD_API_CONCURRENCY"}


class _Store(argparse.Action):
    """argparse's store, which also notes a value given by an old name of its flag."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        if option_string in _OLD_FLAGS:
            namespace.old_flags = [*namespace.old_flags, option_string]


class _Parser(argparse.ArgumentParser):
    """argparse, whose errors about a value set in the environment name the variable."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_env: dict[str, str] = {}  # variable -> flag, while their values are parsed

    def error(self, message: str) -> NoReturn:
        named = [env for env, flag in self.from_env.items() if f"argument {flag}" in message]
        super().error(f"{message} (set by {named[-1]})" if named else message)


def parser(environ: Mapping[str, str]) -> _Parser:
    p = _Parser(
        prog="python -m ucloud_operator",
        description="Runs UCloudJobs (ucloudjobs.ucloud.dk/v1): replica pods in UCloud's states.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ucloud-operator {__version__}")
    p.set_defaults(old_flags=[])
    p.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="a namespace to watch; repeat for more; all namespaces when not given "
        "[env UCLOUD_NAMESPACES, comma-separated]",
    )
    p.add_argument(
        "--image-pull-grace",
        type=_positive_float,
        default=120.0,
        help="seconds an image pull (or container creation) may fail before the job FAILs "
        "[env UCLOUD_IMAGE_PULL_GRACE]",
    )
    p.add_argument(
        "--node-lost-grace",
        type=_positive_float,
        default=60.0,
        help="seconds a replica's node may stop reporting (Ready Unknown or False, or the "
        "unreachable or not-ready taint) before the job FAILs with NodeLost "
        "[env UCLOUD_NODE_LOST_GRACE]",
    )
    p.add_argument(
        "--pod-policy",
        choices=("enforce", "off"),
        default="enforce",
        help="refuse templates with privileged containers, hostPath volumes or host namespaces "
        "(FAILURE, TemplateNotAllowed) [env UCLOUD_POD_POLICY]",
    )
    p.add_argument(
        "--gang-admission",
        choices=gangs.MODES,
        default="auto",
        help="place the replicas of a job all or none, through Kubernetes' Workload API "
        "(a PodGroup per job of more than one replica): auto uses it where the API server "
        "serves it; on refuses to start where it does not [env UCLOUD_GANG_ADMISSION]",
    )
    p.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        default="INFO",
        help="log level [env UCLOUD_LOG_LEVEL]",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log format [env UCLOUD_LOG_FORMAT]",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=16,
        help="jobs reconciled at once [env UCLOUD_WORKERS]",
    )
    p.add_argument(
        "--api-concurrency",
        "--api-threads",  # its first name, deprecated: Deployments rendered before still pass it
        dest="api_concurrency",
        action=_Store,
        type=_positive_int,
        default=32,
        help="API requests in flight at once [env UCLOUD_API_CONCURRENCY]; --api-threads and "
        "UCLOUD_API_THREADS are its old, deprecated names (read, with a warning)",
    )
    p.add_argument(
        "--metrics-address",
        default=":8080",
        help="host:port serving /metrics; empty to turn off [env UCLOUD_METRICS_ADDRESS]",
    )
    p.add_argument(
        "--metrics-secure",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="serve /metrics over HTTPS to callers whose bearer token a TokenReview "
        "authenticates and a SubjectAccessReview allows get on the URL /metrics (needs create "
        "on tokenreviews and subjectaccessreviews); the probes stay plain HTTP "
        "[env UCLOUD_METRICS_SECURE]",
    )
    p.add_argument(
        "--metrics-cert-dir",
        default="",
        help="with --metrics-secure: a folder with tls.crt and tls.key, read again when they "
        "change; empty: a self-signed certificate made at start [env UCLOUD_METRICS_CERT_DIR]",
    )
    p.add_argument(
        "--health-address",
        default=":8081",
        help="host:port serving /healthz and /readyz [env UCLOUD_HEALTH_ADDRESS]",
    )
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="act only while holding a coordination.k8s.io Lease, so that more replicas can "
        "stand by (needs get, create and update on it: the operator exits at start when "
        "refused); off suits a single process [env UCLOUD_LEADER_ELECT]",
    )
    p.add_argument(
        "--lease-namespace",
        default=environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Lease [env UCLOUD_LEASE_NAMESPACE, else POD_NAMESPACE]",
    )
    p.add_argument(
        "--lease-name",
        default="ucloud-operator",
        help="name of the Lease [env UCLOUD_LEASE_NAME]",
    )
    return p


def _as_argument(p: argparse.ArgumentParser, env: str, value: str) -> list[str]:
    flag = ENV_FLAGS[env]
    if flag not in _SWITCHES:
        return [f"{flag}={value}"]
    if value.lower() in _TRUE:
        return [flag]
    if value.lower() in _FALSE:
        return [f"--no-{flag.removeprefix('--')}"]
    p.error(f"{env}: expected one of {', '.join(_TRUE + _FALSE)}, got {value!r}")


def parse(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorSettings:
    environ = os.environ if environ is None else environ
    p = parser(environ)
    from_env = {env: environ[env] for env in ENV_FLAGS if environ.get(env)}
    p.from_env = {env: ENV_FLAGS[env] for env in from_env}
    # Each variable apart, so that an error names the one at fault; then all, before argv.
    env_args = [arg for env, value in from_env.items() for arg in _as_argument(p, env, value)]
    for arg in env_args:
        p.parse_args([arg])
    p.from_env = {}
    args = p.parse_args([*env_args, *(sys.argv[1:] if argv is None else argv)])
    deprecated = [f"{old} is deprecated: use {_OLD_FLAGS[old]}" for old in args.old_flags]
    deprecated += [
        f"{old} is deprecated: use {new}"
        for old, new in _OLD_ENV.items()
        if environ.get(old) and not environ.get(new)
    ]
    _check_metrics_secure(p, args)
    namespaces = args.namespaces
    if namespaces is None:
        namespaces = [n.strip() for n in _env(environ, "UCLOUD_NAMESPACES", "").split(",")]
    return OperatorSettings(
        namespaces=tuple(sorted({n for n in namespaces if n})),
        image_pull_grace=args.image_pull_grace,
        node_lost_grace=args.node_lost_grace,
        pod_policy=args.pod_policy == "enforce",
        log_level=args.log_level,
        log_format=args.log_format,
        workers=args.workers,
        api_concurrency=args.api_concurrency,
        # Unique per process: a restarted operator must not pass for its dead predecessor.
        instance=f"{environ.get('POD_NAME') or os.uname().nodename}_{uuid.uuid4().hex[:6]}",
        metrics_address=args.metrics_address,
        health_address=args.health_address,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        metrics_secure=args.metrics_secure,
        metrics_cert_dir=args.metrics_cert_dir,
        gang_admission=args.gang_admission,
        deprecated=tuple(deprecated),
    )


def _check_metrics_secure(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refused at start, not when /metrics is first scraped: a certificate folder without
    --metrics-secure or without its files, and probes that would have to share the HTTPS port."""
    if args.metrics_cert_dir and not args.metrics_secure:
        p.error("--metrics-cert-dir is read only with --metrics-secure")
    if not args.metrics_secure:
        return
    # The same address, unless port 0: each server then gets a port of its own.
    same = args.metrics_address == args.health_address
    if same and args.metrics_address and not args.metrics_address.endswith(":0"):
        p.error(
            "--metrics-secure needs --health-address apart from --metrics-address: "
            "the probes stay plain HTTP"
        )
    if args.metrics_cert_dir:
        missing = [
            name
            for name in CERT_FILES
            if not os.path.isfile(os.path.join(args.metrics_cert_dir, name))
        ]
        if missing:
            p.error(f"--metrics-cert-dir {args.metrics_cert_dir}: no {' or '.join(missing)}")
