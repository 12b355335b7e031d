"""docs/sweeps.md's Python examples run as written (in order, in one namespace), and its pytest example passes."""

from __future__ import annotations

import re
from pathlib import Path

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
TEXT = (ROOT / "docs" / "sweeps.md").read_text()


def test_sweeps_page_examples_run(tmp_path, monkeypatch):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", TEXT, re.S) if "def test_" not in b]
    assert len(blocks) >= 3
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/sweeps.md", "exec"), namespace)  # our own documentation


def test_sweeps_page_pytest_example_passes(pytester):
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    ini = re.findall(r"```ini\n(.*?)```", TEXT, re.S)[-1]
    test = [b for b in re.findall(r"```python\n(.*?)```", TEXT, re.S) if "def test_" in b][-1]
    (pytester.path / "examples").symlink_to(ROOT / "examples")
    pytester.makeini(ini)
    pytester.makepyfile(test_sweep_doc=test)
    result = pytester.runpytest("-p", "no:cacheprovider", "test_sweep_doc.py")
    result.assert_outcomes(passed=1)
