"""The documents say what the code does, and stay inside the repository.

- docs/api.md's reason table names every reason the operator can write to `status.reason`, and
  no other word;
- every relative link in README.md, docs/*.md and bench/*.md leads to a file (and heading) of
  this repository;
- README.md stays a short document for users.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from ucloud_operator.models import Reason

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "ucloud_operator"
API_DOC = ROOT / "docs" / "api.md"
README = ROOT / "README.md"
README_MAX_BYTES = 25_000
DOCUMENTS = sorted({README, *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.md")})

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def code_reasons() -> set[str]:
    return {reason.value for reason in Reason}


def table_reasons() -> list[str]:
    """The first cell of each row of docs/api.md's table whose header starts `| reason |`."""
    reasons: list[str] = []
    in_table = False
    for line in API_DOC.read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        first = line.strip("|").split("|")[0].strip()
        if first == "reason":
            in_table = True
        elif in_table and set(first) - set("-: "):
            word = re.fullmatch(r"`(\w+)`", first)
            assert word, f"docs/api.md: a reason cell must be one word in backticks: {line}"
            reasons.append(word[1])
    return reasons


def test_the_reason_table_names_every_reason_the_code_writes() -> None:
    missing = code_reasons() - set(table_reasons())
    assert not missing, f"docs/api.md's reason table lacks {sorted(missing)}"


def test_the_reason_table_names_only_reasons_the_code_writes() -> None:
    reasons = table_reasons()
    unknown = set(reasons) - code_reasons()
    assert not unknown, f"docs/api.md's reason table names {sorted(unknown)}, not in the code"
    assert len(reasons) == len(set(reasons)), "a reason has two rows"


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _anchors(document: Path) -> set[str]:
    """GitHub's anchors for the document's headings."""
    anchors: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", document.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def _broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_prose(document.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # a URL, not a path in the repository
        path, _, anchor = target.partition("#")
        resolved = (document.parent / unquote(path)).resolve() if path else document
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(document: Path) -> None:
    assert not _broken_links(document)


def test_the_readme_is_short() -> None:
    size = README.stat().st_size
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move details to docs/"
