"""Every test the documents name as proof exists: a renamed or deleted test would otherwise
leave a guarantee standing on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `tests/x/test_y.py::test_z`, and the `::test_w` that follow it in the same cell.
_FIRST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
_MORE = re.compile(r"`::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def _named_tests(document: Path) -> list[tuple[str, str]]:
    named: list[tuple[str, str]] = []
    for line in document.read_text().splitlines():
        for cell in line.split("|"):
            current: str | None = None
            for token in re.finditer(rf"{_FIRST.pattern}|{_MORE.pattern}", cell):
                if token.group(1):
                    current = token.group(1)
                    named.append((current, token.group(2)))
                elif current is not None:
                    named.append((current, token.group(3)))
    return named


def test_every_test_named_in_the_docs_exists() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = [item for document in documents for item in _named_tests(document)]
    assert len(named) > 50, "the pattern finds the documents' test names"
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).exists() or name not in _tests_in(ROOT / path)
    ]
    assert missing == []
