"""The ```python examples of a docs page, read and run one way for every test that runs a page.

Example:
    >>> python_blocks("text\\n```python\\nx = 1\\n```\\n")
    ['x = 1\\n']
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python blocks of ``text``, in order."""
    return _BLOCK.findall(text)


def run_blocks(blocks: list[str], page: str, tmp_path: Path, monkeypatch: Any, *, examples: bool = True) -> dict:
    """Run ``blocks`` in order in one namespace, in ``tmp_path`` (with ``examples/`` linked there when ``examples``,
    as the pages name the shipped checkpoints by that path) → the namespace. ``page`` names them in tracebacks."""
    if examples:
        (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)  # our own documentation
    return namespace
