"""`python -m ucloud_operator`: run the operator against the current cluster."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, cast

import kopf
import uvloop

from . import settings as settings_module
from .handlers import Runtime, SharedMemo, registry
from .memories import CompactMemories
from .wirejson import decode_kopf_streams


def main(argv: Sequence[str] | None = None) -> int:
    ours = settings_module.parse(argv)
    log_format = kopf.LogFormat.JSON if ours.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(debug=ours.log_level == "DEBUG", log_format=log_format, log_refkey="job")
    logging.getLogger().setLevel(ours.log_level)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if ours.log_level != "DEBUG":  # kopf logs every handled watch event at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger(__package__).info(
        "starting: namespaces=%s image-pull-grace=%ss node-lost-grace=%ss pod-policy=%s workers=%d",
        ",".join(ours.namespaces) or "*",
        ours.image_pull_grace,
        ours.node_lost_grace,
        "enforce" if ours.pod_policy else "off",
        ours.workers,
    )
    decode_kopf_streams()
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
            memo=SharedMemo(runtime=Runtime(ours)),
            memories=CompactMemories(),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
