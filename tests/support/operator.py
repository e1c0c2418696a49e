"""The operator under test, seen from outside: its log, its /metrics and its probes; and the
operator as a process the cluster tiers start, kill and restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.poll import poll

IMAGE_PULL_GRACE = 3  # seconds: the operator runs with a short grace so tests stay quick
NODE_LOST_GRACE = 3  # seconds, likewise


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """The status and body of a GET; an error status is an answer too. Raises OSError when
    nothing answers (not listening yet, or gone)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class Samples(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """One scrape of /metrics: {(sample name, its labels): value}."""

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and wanted <= ls)

    def named(self, prefix: str) -> str:
        """The samples whose name starts with `prefix`, a line each (for a failure message)."""
        return "\n".join(
            f"  {n}{dict(ls)} {v}" for (n, ls), v in self.items() if n.startswith(prefix)
        )


class Metrics:
    """The operator's /metrics."""

    def __init__(self, url: str) -> None:
        self.url = url

    def scrape(self) -> Samples:
        """Raises OSError while /metrics does not answer 200 (a poll takes that as not yet)."""
        status, text = http_get(self.url)
        if status != 200:
            raise OSError(f"GET {self.url}: {status} {text[:200]}")
        samples = Samples()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().value(name, **labels)


def log_tail(path: Path | None, lines: int = 80) -> str:
    if path is None:
        return "(no operator log given)"
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


class Operator:
    """The operator as a test sees it from outside. Whatever is not given (an installed
    operator's log, say) is left out of what a test can look at."""

    def __init__(
        self,
        log_path: Path | None = None,
        metrics_url: str | None = None,
        health_url: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.metrics = Metrics(metrics_url) if metrics_url else None
        self.health_url = health_url.rstrip("/") if health_url else None

    def log_tail(self, lines: int = 80) -> str:
        return log_tail(self.log_path, lines)

    def log_size(self) -> int:
        """Where the log ends now: `wait_for_log` reads what is written after it."""
        return self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def wait_for_log(self, pattern: str, since: int, timeout: float = 30.0) -> re.Match[str]:
        """The first line written after `since` that matches `pattern`."""
        compiled = re.compile(pattern)

        def written() -> re.Match[str] | None:
            return compiled.search(self.log_since(since))

        return poll(f"a log line matching {pattern!r}", written, self.log_tail, timeout)

    def probe(self, path: str, timeout: float = 30.0) -> str:
        """Poll the probe at `path` until it answers 200; its body."""
        if self.health_url is None:
            pytest.fail("no probe address given for the operator", pytrace=False)
        url = self.health_url + path
        answers: list[tuple[int, str]] = []

        def healthy() -> str | None:
            answers.append(http_get(url))
            return answers[-1][1] if answers[-1][0] == 200 else None

        return poll(
            f"GET {path} == 200",
            healthy,
            lambda: f"last answer: {answers[-1:]}\n{self.log_tail()}",
            timeout,
        )

    def scrape(self, timeout: float = 30.0) -> Samples:
        """/metrics, once it answers."""
        if self.metrics is None:
            pytest.fail("no /metrics address given for the operator", pytrace=False)
        return poll("/metrics to answer", self.metrics.scrape, self.log_tail, timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OperatorProcess(Operator):
    """`python -m ucloud_operator` against the test cluster; restartable, killable."""

    def __init__(self, kubeconfig: str, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        super().__init__(
            log_path,
            f"http://127.0.0.1:{self.metrics_port}/metrics",
            f"http://127.0.0.1:{self.health_port}",
        )
        self.kubeconfig = kubeconfig
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        assert self.log_path is not None
        return self.log_path

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n===== operator start #{self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ucloud_operator",
                    "--image-pull-grace",
                    str(IMAGE_PULL_GRACE),
                    "--node-lost-grace",
                    str(NODE_LOST_GRACE),
                    "--log-level",
                    "DEBUG",
                    # Off by default; the tiers were written with it on (test_ha runs a standby).
                    "--leader-elect",
                    "--metrics-address",
                    f"127.0.0.1:{self.metrics_port}",
                    "--health-address",
                    f"127.0.0.1:{self.health_port}",
                    *self.extra_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        """Start it again if a test killed it (the session's operator serves the next tests)."""
        if not self.alive():
            self.start()
