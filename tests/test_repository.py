"""The repository is self-contained: every document its files point to ships with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# "DESIGN.md", "docs/x.md", or a bare "DESIGN §3" (a design document's section).
_CITED_DOC = re.compile(r"\b([\w./-]+\.md)\b|\b(DESIGN)\b\s*§")
_SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
_TREES = ("framework", "app_template", "cmd", "configs", "deploy", "bench")


def _files() -> list[Path]:
    files = [ROOT / name for name in _SOURCES]
    for tree in _TREES:
        files += [p for p in (ROOT / tree).rglob("*") if p.is_file() and p.suffix != ".pyc"]
    return files


def test_every_cited_document_is_in_the_repository() -> None:
    """Item 26: pyproject.toml cited DESIGN.md (and tansu.py "DESIGN §5"), absent from here."""
    missing = []
    for path in _files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for match in _CITED_DOC.finditer(line):
                name = match.group(1)
                if name is None or not (
                    (ROOT / name).is_file() or (path.parent / name).is_file()
                ):
                    where = f"{path.relative_to(ROOT)}:{number}"
                    missing.append(f"{where}: {match.group(0)}")
    assert missing == [], "documents cited but not in the repository:\n" + "\n".join(missing)
