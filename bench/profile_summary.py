"""Summarise a py-spy `--format raw` profile (collapsed stacks: `frame;frame;... count`)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def summarise(path: str, top: int = 20) -> dict[str, Any]:
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            # A frame reads "function (path/to/file.py:line)"; drop the line for grouping.
            names = [frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame for frame in frames]
            self_samples[names[-1]] += count
            for name in set(names):
                inclusive[name] += count
            leaf = frames[-1]
            module = leaf[leaf.find("(") + 1 :].split(":", 1)[0] if "(" in leaf else leaf
            for marker in ("site-packages/", "lib/python3"):
                if marker in module:
                    module = module.split(marker, 1)[1]
            modules[module.split("/", 1)[0] if "/" in module else module] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "self_percent": share(self_samples),
        "inclusive_percent": share(inclusive),
        "leaf_package_percent": share(modules),
    }
