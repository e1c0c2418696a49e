"""Event-loop stall of the operator, seen from outside: poll its /healthz every 50 ms.

    python bench/stallprobe.py --url http://127.0.0.1:PORT/healthz --out stall.json

The operator serves /healthz from its event loop, so while the loop is blocked no answer comes.
One keep-alive connection, a request every `--interval` seconds (never two in flight); the
longest gap between two answers, minus the interval, bounds the longest stall from above (it
also contains this probe's own scheduling delay on a busy machine). Writes a JSON summary on
SIGTERM/SIGINT or after --max-seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time
from urllib.parse import urlparse


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--max-seconds", type=float, default=4 * 3600)
    args = p.parse_args()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    url = urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    started = time.monotonic()
    last_answer: float | None = None
    max_gap = max_response = 0.0
    max_gap_at = 0.0
    answers = failures = 0
    gaps_over_100ms = 0
    while not stop and time.monotonic() - started < args.max_seconds:
        sent = time.monotonic()
        try:
            conn.request("GET", url.path or "/healthz")
            conn.getresponse().read()
            answered = time.monotonic()
            answers += 1
            max_response = max(max_response, answered - sent)
            if last_answer is not None:
                gap = answered - last_answer
                if gap > max_gap:
                    max_gap, max_gap_at = gap, answered - started
                if gap - args.interval > 0.1:
                    gaps_over_100ms += 1
            last_answer = answered
        except (OSError, http.client.HTTPException):
            failures += 1
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        delay = args.interval - (time.monotonic() - sent)
        if delay > 0:
            time.sleep(delay)
    summary = {
        "method": f"/healthz polled every {args.interval * 1000:g} ms from a separate process "
        "over one keep-alive connection; stall <= longest gap between answers - interval",
        "answers": answers,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
        "max_gap_seconds": round(max_gap, 4),
        "max_gap_at_seconds": round(max_gap_at, 1),
        "max_stall_upper_bound_seconds": round(max(0.0, max_gap - args.interval), 4),
        "max_response_seconds": round(max_response, 4),
        "gaps_over_100ms": gaps_over_100ms,
    }
    with open(args.out, "w") as f:
        json.dump(summary, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
