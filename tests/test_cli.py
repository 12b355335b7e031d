"""The ``rli`` console script."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli.cli import _parser, main

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


# ------------------------------------------------------------------------------------ help and usage
COMMANDS = {"layers": ["--arch", "--trust", "--json"],
            "probe": ["--env", "--target", "--layer", "--all-layers", "--obs", "--n", "--episodes", "--seed", "--kind",
                      "--folds", "--no-controls", "--json", "--trust"],
            "interrogate": ["--env", "--out", "--target", "--layer", "--sensors", "--probe-obs", "--polarity-obs",
                            "--episodes", "--seed", "--n-obs", "--obs-episodes", "--candidates", "--tolerance", "--greedy",
                            "--no-causal", "--trust"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_option_with_an_explanation(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert sorted(a.option_strings[0] for a in options) == sorted(COMMANDS[command])
    for action in options:
        assert action.help and len(action.help) > 15, f"{action.option_strings[0]} has no real help text"
        assert action.option_strings[0] in out
    assert "policy" in out and sub.description


def test_top_level_help_names_the_commands_and_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS) and "Exit codes: 0 ok, 1 bad input" in out


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["probe"],
    ["probe", str(CHECKPOINT), "--layer", "5", "--all-layers"],
    ["probe", str(CHECKPOINT), "--n", "0"],
    ["probe", str(CHECKPOINT), "--kind", "svm"],
    ["interrogate", str(CHECKPOINT), "--sensors", "twelve"],
    ["interrogate", str(CHECKPOINT), "--episodes", "1"],
    ["interrogate", str(CHECKPOINT), "--bogus"],
])
def test_usage_errors_exit_2(args, capsys):
    assert main(args) == 2
    assert "usage: rli" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ probe
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rli: error: ") and err.count("\n") == 1, err
    return err


def test_probe_prints_the_probe_result_with_controls(capsys):
    assert main(["probe", str(CHECKPOINT), "--target", "obs[2]", "--n", "300", "--episodes", "6"]) == 0
    out = capsys.readouterr().out
    assert "observations: 300 observations visited by the policy in CartPole-v1" in out, "env from the card"
    assert ("ridge probe of 'obs[2]' at layer 5 (Tanh, width 64): n = 300, split grouped by episode, 5 folds, "
            "6 groups, seed 0") in out
    assert "control: untrained network (3 seeds)" in out and "selectivity" in out


def test_probe_all_layers_json(capsys):
    assert main(["probe", str(CHECKPOINT), "--target", "obs[0]", "--n", "200", "--episodes", "5", "--all-layers",
                 "--no-controls", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["profile"]["layers"]) == 7 and data["profile"]["results"][5]["controls"] == {}
    assert data["fingerprint"] and data["observations"].startswith("200 observations")


def test_probe_json_single_layer(capsys):
    assert main(["probe", str(CHECKPOINT), "--target", "obs[1]", "--layer", "actor.3", "--n", "200", "--episodes", "5",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["layer_index"] == 3 and result["target"] == "obs[1]" and -1 < result["r2"] <= 1


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A whole pickled nn.Sequential (2 inputs) and a labelled 2-D grid saved beside it, no card."""
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)), tmp_path / "tiny.pt")
    grid = rli.ObsSet.grid(np.zeros(2), {0: np.linspace(-1, 1, 15), 1: np.linspace(-1, 1, 12)},
                           label_fn=lambda o: {"field": o[:, 0] * o[:, 1]})
    grid.save(tmp_path / "grid.npz")
    return tmp_path


def test_probe_on_saved_observations_needs_no_environment(tiny, capsys):
    assert main(["probe", str(tiny / "tiny.pt"), "--obs", str(tiny / "grid.npz"), "--target", "field"]) == 0
    out = capsys.readouterr().out
    assert f"observations: {tiny / 'grid.npz'}" in out and "probe of 'field' at layer 1" in out


@pytest.mark.parametrize("args, message", [
    (["probe", "{tiny}/tiny.pt"], "no environment: the observations come from rollouts .* pass env= / --env"),
    (["probe", "{tiny}/tiny.pt", "--obs", "{tiny}/grid.npz"], r"no target: give --target, one of the labels of "
                                                              r".*grid.npz \(field, obs\[0\], obs\[1\]\)"),
    (["probe", "{tiny}/tiny.pt", "--obs", "{tiny}/grid.npz", "--target", "heat"], "have no label 'heat'"),
    (["probe", "{tiny}/tiny.pt", "--obs", "os:getcwd", "--target", "x"], "outside rli; pass trust=True"),
    (["probe", "{tiny}/missing.pt"], "no such policy file"),
    (["probe", "{tiny}/tiny.pt", "--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
    (["probe", str(CHECKPOINT), "--n", "300", "--episodes", "5"], r"cannot infer a target: CartPole-v1 .*\(episode, step\)"),
    (["probe", str(CHECKPOINT), "--target", "obs[2]", "--layer", "9", "--n", "100"], "layer '9' is out of range"),
    (["interrogate", "{tiny}/tiny.pt"], "no environment: the ablation steps run episodes"),
    (["interrogate", str(CHECKPOINT), "--tolerance", "2"], "tolerance is a fraction"),
])
def test_bad_input_is_one_line_and_exit_1(tiny, args, message, capsys):
    assert main([a.format(tiny=tiny) for a in args]) == 1
    assert re.search(message, _one_line_error(capsys))


# ------------------------------------------------------------------------------------- interrogate
def test_interrogate_writes_the_report_and_prints_the_findings(tmp_path, capsys, monkeypatch):
    """A small interrogation of the shipped CartPole checkpoint (its card names the env; no interrogate block)."""
    monkeypatch.chdir(tmp_path)
    args = ["interrogate", str(CHECKPOINT), "--target", "obs[2]", "--sensors", "2", "--episodes", "2",
            "--n-obs", "200", "--candidates", "2", "--seed", "7", "--no-causal"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == "", "no progress display when stderr is not a terminal"
    out = captured.out
    assert "1. Linear probing:" in out and "4. Minimal subspace:" in out
    folder = tmp_path / "cartpole_ppo_seed0-interrogation"
    assert "wrote cartpole_ppo_seed0-interrogation/report.html, cartpole_ppo_seed0-interrogation/report.json" in out
    data = json.loads((folder / "report.json").read_text())
    assert data["command"] == shlex.join(["rli", *args]), "a command line a shell runs as is"
    assert data["settings"]["seed"] == 7 and data["ablation"]["points"][0]["seeds"] == [7, 8]
    assert data["sources"]["env"] == "card" and data["sources"]["layer"] == "default"
    assert data["settings"]["layer"] == 5 and data["probe"]["layer_index"] == 5
    assert sorted(p.name for p in folder.glob("*.png")) == ["ablation_curve.png", "layer_profile.png",
                                                             "pca_scatter.png", "subspace_search.png"]
    assert data["settings"]["causal"] is False and data["attribution"] is None and data["patching"] is None
    assert "Attribution:\n  Skipped: causal=False (--no-causal)" in out


@pytest.mark.slow  # a second full interrogation; test_interrogate_writes_the_report_and_prints_the_findings runs one by default
def test_interrogate_greedy_and_out(tmp_path, capsys):
    args = ["interrogate", str(CHECKPOINT), "--target", "obs[3]", "--episodes", "2", "--n-obs", "200",
            "--candidates", "2", "--greedy", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["subspace"]["method"] == "greedy" and data["polarity"] is None
    assert data["causal"]["patching"]["counterfactual_kind"] == "permuted" and data["settings"]["causal"] is True
    assert len(data["patching"]["units"]["sites"]) == 64 and data["attribution"]["target"] == "action"


@pytest.mark.slow
def test_the_probe_example_in_docs_cli_md_is_what_the_command_prints(capsys):
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    shown = re.search(r"\$ rli probe examples/checkpoints/formation_ppo_seed42.zip\n(.*?)```", text, re.S).group(1)
    assert main(["probe", str(CHECKPOINT.parent / "formation_ppo_seed42.zip")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == shown.splitlines()[1:]
