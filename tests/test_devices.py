"""The device check (benchmarks/gpu_check.py) is itself tested here, CPU against CPU, and an unavailable device is a
one-line RliError. CUDA's absence is simulated (``torch.cuda.is_available`` patched), so the same tests run on any
machine; the check against a real GPU is the script's job (benchmarks/README.md records its runs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import rli
from rli.observations import ObsSet

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


def _load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load_check()


@pytest.fixture(scope="module")
def cartpole():
    policy = rli.load_policy(CARTPOLE)
    obs = ObsSet.from_rollouts("CartPole-v1", policy, n=250, seed=0, episodes=5, max_episode_steps=50)
    return policy, obs


def test_cpu_against_cpu_is_exactly_equal_and_exits_0(capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--only", "cartpole", "--n-obs", "250", "--episodes", "5",
                           "--probe-episodes", "5", "--max-steps", "50", "--alpha", "1.0",
                           "--json", str(tmp_path / "rows.json")]) == 0
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["machine"]["device"] == "cpu" and all(row["diff"] == 0 and row["ok"] for row in saved["rows"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("cartpole ")]
    assert len(rows) == 7 + 7 + 5  # capture and probe R² for each of the 7 actor layers, 5 episodes
    assert "19 of 19 within tolerance" in out


def test_the_harness_flags_a_different_network(cartpole):
    """A weight changed by 1e-3 (relative) shows in capture and in the probes; negated action logits in the returns."""
    policy, obs = cartpole
    nudged = rli.load_policy(CARTPOLE)
    with torch.no_grad():
        first = next(nudged.module.parameters())
        first.add_(1e-3 * first.abs().max())
    capture = gpu_check.compare_capture("cartpole", policy, nudged, obs)
    assert all(not row.ok for row in capture)
    probes = gpu_check.compare_probes("cartpole", policy, nudged, obs, obs.labels["step"], alpha=1.0)
    assert any(not row.ok for row in probes)
    flipped = rli.load_policy(CARTPOLE)
    with torch.no_grad():
        flipped.module.get_submodule("action_net").weight.neg_()
        flipped.module.get_submodule("action_net").bias.neg_()
    returns = gpu_check.compare_returns("cartpole", policy, flipped, "CartPole-v1", 2, 0, 50)
    assert [row.ok for row in returns] == [False, False] and all("length" in row.where for row in returns)
    assert "NO" in gpu_check.table(capture) and "0 of 7 within tolerance" in gpu_check.table(capture)


def test_no_cuda_is_a_one_line_error_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(rli.RliError) as info:
        rli.load_policy(CARTPOLE, device="cuda")
    message = str(info.value)
    assert "\n" not in message and "'cuda' is not available" in message and "device='cpu'" in message
    assert gpu_check.main(["--device", "cuda"]) == 2
    assert "'cuda' is not available" in capsys.readouterr().err
    with pytest.raises(rli.RliError, match="device must be 'cpu' or 'cuda'"):
        rli.load_policy(CARTPOLE, device="gpu0")

