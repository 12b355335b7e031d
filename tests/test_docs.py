"""The user guide's Python examples run as written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.doc_examples import python_blocks, run_blocks

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent


def test_guide_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "guide.md").read_text()
    blocks = [b for b in python_blocks(text) if "def test_" not in b]
    assert blocks
    run_blocks(blocks, "docs/guide.md", tmp_path, monkeypatch)


def test_guide_assertion_examples_pass_in_pytest(pytester):
    """The guide's pytest.ini and test examples, run as a user would run them."""
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    text = (ROOT / "docs" / "guide.md").read_text()
    ini = re.findall(r"```ini\n(.*?)```", text, re.S)[-1]
    tests = [b for b in python_blocks(text) if "def test_" in b and "rli." in b]
    (pytester.path / "examples").symlink_to(ROOT / "examples")
    pytester.makeini(ini)
    pytester.makepyfile(test_guide=tests[-1])
    result = pytester.runpytest("-p", "no:cacheprovider", "test_guide.py")
    result.assert_outcomes(passed=tests[-1].count("def test_"))
