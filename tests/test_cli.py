"""The ``rli`` console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rli.cli import main

CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


def test_layers_prints_the_table_of_the_shipped_checkpoint(capsys):
    assert main(["layers", str(CHECKPOINT)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Policy(PPO, obs (4,), 7 actor layers")
    assert "5      actor.5   mlp_extractor.policy_net.5  Tanh     64" in out


def test_layers_json(capsys):
    assert main(["layers", str(CHECKPOINT), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][5]["name"] == "mlp_extractor.policy_net.5" and len(data["fingerprint"]) == 64


def test_bare_weights_with_arch(tmp_path, capsys):
    torch.save(nn.Sequential(nn.Linear(5, 7), nn.ELU(), nn.Linear(7, 2)).state_dict(), tmp_path / "w.pt")
    assert main(["layers", str(tmp_path / "w.pt"), "--arch", "mlp:5,7,2:elu"]) == 0
    assert "ELU" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["layers", "missing.zip"], ["layers", "w.pt", "--arch", "cnn:3"]])
def test_errors_are_one_line_and_exit_1(args, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("rli: error: ") and err.count("\n") == 1


def test_console_script_is_installed():
    result = subprocess.run([Path(sys.executable).parent / "rli", "layers", str(CHECKPOINT)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "action_net" in result.stdout
    usage = subprocess.run([Path(sys.executable).parent / "rli"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: rli" in usage.stderr
