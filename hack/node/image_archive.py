"""Pack a folder as a one-layer image in docker-archive form, which `ctr images import` takes.

    python3 hack/node/image_archive.py ROOTFS REF OUT.tar [--entrypoint JSON] [--user U]

The node's images are made here from local files (no registry is reachable): the pause
container from hack/node/pause, the test image from Debian's busybox-static.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def layer(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("ref")
    parser.add_argument("out", type=Path)
    parser.add_argument("--entrypoint", default="[]", help="JSON list")
    parser.add_argument("--user", default="")
    args = parser.parse_args()

    blob = layer(args.rootfs)
    diff_id = "sha256:" + hashlib.sha256(blob).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": json.loads(args.entrypoint) or None,
            "User": args.user,
            "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [args.ref], "Layers": [layer_name]}]
    with tarfile.open(args.out, "w") as tar:
        for name, data in (
            (config_name, config_bytes),
            (layer_name, blob),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
