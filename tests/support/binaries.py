"""The control plane's binaries (kubectl, helm, ...), as hack/build-control-plane.sh caches them."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def control_plane_bin() -> Path:
    """The folder of the cached binaries: the script prints it last, building them once if
    they are missing."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-control-plane.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])
