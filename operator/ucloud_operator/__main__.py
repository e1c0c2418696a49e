"""`python -m ucloud_operator`: run the operator against the current cluster."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, cast

import kopf
import uvloop
from kubernetes import client

from . import settings as settings_module
from .handlers import Runtime, registry
from .kube import load_client_config
from .leader import KubernetesLeaseApi, LeaderElector, LeaseUnusable
from .settings import OperatorSettings

logger = logging.getLogger(__package__)


def main(argv: Sequence[str] | None = None) -> int:
    ours = settings_module.parse(argv)
    configure_logging(ours.log_format, ours.log_level)
    logger.info(
        "starting: namespaces=%s image-pull-grace=%ss node-lost-grace=%ss pod-policy=%s workers=%d "
        "api-concurrency=%d leader-elect=%s",
        ",".join(ours.namespaces) or "*",
        ours.image_pull_grace,
        ours.node_lost_grace,
        "enforce" if ours.pod_policy else "off",
        ours.workers,
        ours.api_concurrency,
        f"lease {ours.lease_namespace}/{ours.lease_name}" if ours.leader_elect else "off",
    )
    for sentence in ours.deprecated:
        logger.warning("%s", sentence)
    if ours.leader_elect and not lease_usable(ours):
        return 1
    # libuv's event loop, as `kopf run` takes when uvloop is installed.
    uvloop.run(
        kopf.operator(
            registry=registry,
            clusterwide=not ours.namespaces,
            namespaces=ours.namespaces,
            standalone=True,
            # Without it kopf names the process after getpass.getuser(), which raises where the
            # UID has no passwd entry: containerd, CRI-O and Docker add none, and OpenShift runs
            # images under arbitrary UIDs. kopf's Identity is a NewType of str it does not export.
            identity=cast(Any, ours.instance),
            memo=kopf.Memo(runtime=Runtime(ours)),
        )
    )
    return 0


def configure_logging(log_format: str, log_level: str) -> None:
    """kopf's formatters: a line about a job names it, as a `[namespace/name]` prefix in text
    and under "job" in JSON."""
    json_lines = log_format == "json"
    kopf.configure(
        debug=log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if json_lines else kopf.LogFormat.FULL,
        log_prefix=not json_lines,
        log_refkey="job",
    )
    logging.getLogger().setLevel(log_level)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if log_level != "DEBUG":  # kopf logs every handled watch event at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def lease_usable(ours: OperatorSettings) -> bool:
    """With --leader-elect: false, said once and clearly, when this identity may not read or
    write the Lease or its namespace does not exist, instead of standing by for ever, warning
    every retry. A Lease that cannot be checked now (API server unreachable) is left to the
    elector, which keeps trying."""
    try:
        configuration = load_client_config()
    except Exception as error:  # kopf's login reports it in its own words
        logger.warning(
            "could not check lease %s/%s: %s", ours.lease_namespace, ours.lease_name, error
        )
        return True
    api = KubernetesLeaseApi(client.ApiClient(configuration), ours.lease_namespace, ours.lease_name)
    elector = LeaderElector(api, ours.lease_namespace, ours.lease_name, ours.instance)
    try:
        asyncio.run(elector.check_access())
    except LeaseUnusable as error:
        logger.error("%s", error)
        return False
    finally:
        api.close()
    return True


if __name__ == "__main__":
    sys.exit(main())
