"""One path for each cross-cutting chore, enforced on the source: tensors become numpy arrays only in
``rli/tensors.py``, progress is drawn (tqdm, ``isatty``) only in ``rli/progress.py``, and a default that several
functions share is written only in ``rli/defaults.py``."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for package in ("rli", "pytest_rli") for p in (ROOT / package).rglob("*.py"))

def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines outside docstring examples (``>>>`` / ``...`` lines), numbered from 1."""
    return [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1)
            if not line.lstrip().startswith((">>>", "... "))]


def _hits(pattern: str, allowed: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in SOURCES:
        name = path.relative_to(ROOT).as_posix()
        if name == allowed:
            continue
        lines = [i for i, line in _code_lines(path) if re.search(pattern, line)]
        if lines:
            found[name] = lines
    return found


RULES = {
    # .detach().cpu().numpy(), .cpu().numpy(), .detach().numpy(): rli.tensors.to_numpy does it
    "numpy": (r"\.(cpu|detach)\(\)\s*\.numpy\(\)", "rli/tensors.py"),
    "isatty": (r"\bisatty\(", "rli/progress.py"),
    "tqdm": (r"^\s*(from tqdm|import tqdm)", "rli/progress.py"),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_one_module_does_it(rule):
    pattern, allowed = RULES[rule]
    stray = _hits(pattern, allowed)
    assert not stray, f"{rule}: only {allowed} may do this; use its function instead of: {stray}"


def test_the_rule_catches_what_it_is_meant_to_catch(tmp_path):
    """The patterns match the copies they replaced (a rule that matches nothing would pass forever)."""
    samples = {"numpy": "x = t.detach().cpu().numpy()", "isatty": "if not sys.stderr.isatty():",
               "tqdm": "    from tqdm.auto import tqdm"}
    for rule, line in samples.items():
        assert re.search(RULES[rule][0], line), rule


# ------------------------------------------------------------------------------------------------- defaults
_SHARED = {"episodes": 20, "folds": 5, "tolerance": 0.05, "candidates": 32, "n_obs": 4000, "obs_episodes": 20}


@functools.cache
def _literal_defaults(path: Path) -> list[tuple[str, object, int]]:
    """(argument or field name, literal default, line) for the shared names, in signatures and dataclass fields."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            out += [(a.arg, d.value, d.lineno) for a, d in pairs if isinstance(d, ast.Constant)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                isinstance(node.value, ast.Constant):
            out.append((node.target.id, node.value.value, node.lineno))
    return [(name, value, line) for name, value, line in out
            if name in _SHARED and value == _SHARED[name] and type(value) is type(_SHARED[name])]


def test_shared_defaults_are_written_once_in_rli_defaults():
    restated = {}
    for path in SOURCES:
        name = path.relative_to(ROOT).as_posix()
        if name != "rli/defaults.py" and (found := _literal_defaults(path)):
            restated[name] = found
    assert not restated, f"use rli.defaults (EPISODES, FOLDS, TOLERANCE, CANDIDATES, ...) instead of: {restated}"


def test_the_defaults_rule_sees_a_restated_default(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f(x, *, folds: int = 5, episodes=20):\n    pass\nclass A:\n    tolerance: float = 0.05\n")
    assert sorted(n for n, _, _ in _literal_defaults(sample)) == ["episodes", "folds", "tolerance"]
