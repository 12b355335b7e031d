"""The pytest plugin: registered by entry point, cheap to import, the rli_policy fixture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rli  # noqa: F401 — import torch once here: pytester's in-process runs cannot re-import its C extension

pytest_plugins = ["pytester"]
CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


def test_plugin_import_loads_neither_torch_nor_rli():
    code = "import sys, pytest_rli.plugin; print(sorted(m for m in ('torch', 'rli') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_is_registered_through_the_entry_point(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*rli: interpretability assertions*", "*--rli-policy=PATH*"])


def test_rli_policy_from_ini(pytester):
    (pytester.path / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    pytester.makeini("[pytest]\nrli_policy = policy.zip\n")
    pytester.makepyfile("""
        def test_layer_five(rli_policy):
            assert rli_policy.layer(5).type == "Tanh"

        def test_same_object(rli_policy, request):
            assert rli_policy is request.getfixturevalue("rli_policy")
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_marker_overrides_ini_and_option_overrides_ini(pytester):
    (pytester.path / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    pytester.makeini("[pytest]\nrli_policy = missing.zip\n")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.rli(policy="policy.zip")
        def test_marked(rli_policy):
            assert rli_policy.kind == "PPO"

        def test_from_ini(rli_policy):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["rli_policy: no such policy file*missing.zip"])
    assert "During handling" not in result.stdout.str()
    pytester.runpytest("-p", "no:cacheprovider", "--rli-policy", "policy.zip").assert_outcomes(passed=2)


def test_unconfigured_policy_fails_with_instructions(pytester):
    pytester.makepyfile("def test_x(rli_policy):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*rli_policy is not configured*"])


def test_fixture_is_documented(pytester):
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["rli_policy*", "*The policy under test*"])
