"""The driver's progress lines: on stderr, stamped with the time of day."""

from __future__ import annotations

import sys
from datetime import datetime


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
