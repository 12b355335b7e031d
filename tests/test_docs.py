"""The user guide's Python examples run as written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_guide_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "guide.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def test_" not in b]
    assert blocks
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/guide.md", "exec"), namespace)  # noqa: S102 — our own documentation
