"""Bad input gives one line, never a raw traceback: the CLI (a module missing under --trust, a closed pipe) and
the plugin (misspelt ini values, rli_episodes = 1, an option value read as a test path, RliError in an assertion)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import rli  # noqa: F401 — import torch once here: pytester's in-process runs cannot re-import its C extension
from rli.cli import main

pytest_plugins = ["pytester"]
CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"
_COUNTER = itertools.count()


def _failure_section(output: str) -> list[str]:
    """The lines between the first test's failure header and the short summary."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("___"))
    stop = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    return [line for line in lines[start + 1:stop] if line.strip() and not line.startswith("___")]


# ------------------------------------------------------------------------------------------------ CLI
def test_a_module_missing_under_trust_is_one_line(tmp_path, monkeypatch, capsys):
    module = f"rli_tb_custom_{next(_COUNTER)}_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "custom.pt"
    torch.save(__import__(module).Net(), path)
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    code = main(["layers", str(path), "--trust"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"rli: error: cannot import module '{module}', which {path} needs") and err.count("\n") == 1


class _ClosedPipe:
    """stdout whose reader went away: every write is a BrokenPipeError (as with `rli layers ... | head`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.fd


def test_a_closed_stdout_ends_the_command_quietly(tmp_path, monkeypatch, capsys):
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), tmp_path / "tiny.pt")
    read, write = os.pipe()
    try:
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(write))
        code = main(["layers", str(tmp_path / "tiny.pt")])
    finally:
        os.close(read)
        os.close(write)
    assert code == 141
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_closed_stdout_ends_quietly(tmp_path):
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), tmp_path / "tiny.pt")
    # the reader is gone before rli writes a byte: every write meets a broken pipe (as with `rli layers ... | head`)
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "rli.cli", "layers", str(tmp_path / "tiny.pt")], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141


# --------------------------------------------------------------------------------------------- plugin
@pytest.fixture
def project(pytester):
    (pytester.path / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    return pytester


def test_a_misspelt_rli_env_is_one_line_before_any_rollout(project):
    project.makeini("[pytest]\nrli_policy = policy.zip\nrli_env = CartPol-v1\n")
    project.makeconftest("""
        import pytest
        import rli

        def never(*args, **kwargs):
            raise AssertionError("a rollout started before the env name was checked")

        @pytest.fixture(autouse=True)
        def no_rollouts(monkeypatch):
            monkeypatch.setattr(rli.ObsSet, "from_rollouts", classmethod(never))
            monkeypatch.setattr("rli.comparison.evaluate", never)
    """)
    project.makepyfile("""
        def test_ablation(rli):
            rli.assert_ablation_degrades(layer=5, direction="pc1", min_drop=0.05)

        def test_probe_on_rollouts(rli):
            rli.assert_probe_r2(layer=5, target="obs[2]", min=0.5)
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    section = _failure_section(out)
    assert section[0].startswith("rli_env: unknown environment 'CartPol-v1' (the rli_env ini key): ")
    assert "Did you mean: `CartPole`?" in section[0]
    assert len(section) == 2 and "Traceback" not in out and "rollout started" not in out


@pytest.mark.parametrize("value", ["1", "0", "many"])
def test_rli_episodes_below_two_is_a_usage_error_naming_the_key(project, value):
    project.makeini(f"[pytest]\nrli_policy = policy.zip\nrli_episodes = {value}\n")
    project.makepyfile("def test_x():\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: the rli_episodes ini key must be an integer of at least 2 (ablation "
                                 f"assertions compare paired episodes), got '{value}'"])


def test_an_rli_option_value_outside_the_project_is_not_taken_for_a_test_path(pytester, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "my models"
    outside.mkdir()
    (outside / "policy.zip").write_bytes(CHECKPOINT.read_bytes())
    ini = pytester.makeini("[pytest]\nrli_obs = rli.envs:probe_grid\n")
    pytester.makepyfile("""
        def test_configured(rli_policy, rli_obs):
            assert len(rli_obs) > 0
    """)
    policy = str(outside / "policy.zip")
    result = pytester.runpytest("-p", "no:cacheprovider", "--rli-policy", policy)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest read the value of --rli-policy ('{policy}') as a test path while it "
                                 "looked for its configuration, so it found no ini file*instead of "
                                 f"{ini}*write '--rli-policy={policy}' (with '=')*"])
    pytester.runpytest("-p", "no:cacheprovider", f"--rli-policy={policy}").assert_outcomes(passed=1)


def test_an_option_value_inside_the_project_still_works_as_two_words(project):
    project.makeini("[pytest]\nrli_obs = rli.envs:probe_grid\n")
    project.makepyfile("def test_configured(rli_policy, rli_obs):\n    assert rli_policy.kind == 'PPO'\n")
    project.runpytest("-p", "no:cacheprovider", "--rli-policy", "policy.zip").assert_outcomes(passed=1)


def test_an_rli_error_inside_an_assertion_is_a_one_line_failure(project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # room for the short summary's message
    project.makeini("[pytest]\nrli_policy = policy.zip\nrli_env = CartPole-v1\n")
    project.makepyfile("""
        import numpy as np
        import pytest
        import rli as rli_package

        def test_bad_layer(rli):
            rli.assert_probe_r2(layer=99, target="obs[2]", min=0.5, obs=np.zeros((20, 4)))

        def test_bad_input_still_raises_rli_error(rli):
            with pytest.raises(rli_package.RliError, match="out of range"):
                rli.assert_probe_r2(layer=99, target="obs[2]", min=0.5, obs=np.zeros((20, 4)))

        def test_a_bug_in_the_test_keeps_its_traceback():
            raise rli_package.RliError("raised by the test itself")
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    section = _failure_section(out)
    assert section[0].startswith("layer 99 is out of range"), section
    assert not any("pytest_rli" in line or "def test_bad_layer" in line for line in section), section
    assert section[1].startswith("____") or "test_a_bug_in_the_test_keeps_its_traceback" in out
    result.stdout.fnmatch_lines(["FAILED test_an_rli_error_inside_an_assertion_is_a_one_line_failure.py::"
                                 "test_bad_layer - rli.errors.RliError: layer 99 is out of range*"])
    assert "    def test_a_bug_in_the_test_keeps_its_traceback():" in out


def test_actions_outside_the_env_space_fail_an_ablation_assertion_in_one_line(pytester):
    """A policy loaded without env= whose argmax reaches action 2 in CartPole (actions 0 and 1)."""
    pytester.makeconftest("""
        import pytest, torch, torch.nn as nn, rli

        @pytest.fixture
        def rli_policy():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
            with torch.no_grad():
                net[2].bias.copy_(torch.tensor([0.0, 0.0, 100.0]))  # always action 2
            return rli.load_policy(net)
    """)
    pytester.makeini("[pytest]\nrli_env = CartPole-v1\nrli_episodes = 2\n")
    pytester.makepyfile("""
        import numpy as np

        def test_ablation(rli):
            rli.assert_ablation_degrades(layer=1, direction=np.eye(8)[0], min_drop=0.05)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    section = _failure_section(result.stdout.str())
    assert len(section) <= 2 and "action" in section[0] and "Traceback" not in result.stdout.str(), section
