"""The README and the docs name the tests that check each promise: every name they give must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `tests/test_x.py::test_name`, `tests/test_x.py`, or `::test_name` (same file as the reference before it).
REFERENCE = re.compile(r"`((?:tests|benchmarks)/[\w/]+\.py)?(?:::(\w+))?`")


def _references(document: Path) -> list[tuple[str, str | None]]:
    found = []
    for line in document.read_text().splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            if path is None and name is None:
                continue
            current = path or current
            if current is None:
                raise AssertionError(f"{document.name}: `::{name}` has no file before it on its line")
            found.append((current, name))
    return found


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_named_test_exists(document: Path) -> None:
    references = _references(document)
    missing = []
    for path, name in references:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and name not in _defined_names(file):
            missing.append(f"{path}::{name}")
    assert not missing, f"{document.name} names tests that do not exist: {missing}"


def test_the_guarantees_name_tests() -> None:
    assert len(_references(ROOT / "docs" / "guarantees.md")) > 50
    assert len(_references(ROOT / "README.md")) > 20
