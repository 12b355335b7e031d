"""One resolver per kind of name: environments (``module:EnvId`` everywhere), targets (``"obs[I]"`` and
``(name, array)`` everywhere), checked before any work; array targets carry their names to the metrics."""

from __future__ import annotations

import itertools
import json
import re
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

import rli
from rli.cli import main

pytest_plugins = ["pytester"]
_COUNTER = itertools.count()


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


@pytest.fixture
def cartpole_policy() -> rli.Policy:
    return rli.load_policy(_net(), env="CartPole-v1")


@pytest.fixture
def fresh_env_module(tmp_path, monkeypatch) -> str:
    """``"module:EnvId"`` of a module not imported yet that registers EnvId (CartPole's dynamics) when imported."""
    number = next(_COUNTER)
    module, env_id = f"rli_names_envs_{number}_{id(tmp_path)}", f"RliNamesCart{number}-v0"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""
        import gymnasium as gym
        gym.register(id="{env_id}", entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=500)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module not in sys.modules
    return f"{module}:{env_id}"


# ------------------------------------------------------------------------------------ environments
def test_module_env_id_works_in_evaluate_and_matches_the_registered_id(cartpole_policy, fresh_env_module):
    ours = rli.evaluate(cartpole_policy, fresh_env_module, episodes=3, seed=0)
    reference = rli.evaluate(cartpole_policy, "CartPole-v1", episodes=3, seed=0)
    assert ours.returns.tolist() == reference.returns.tolist()
    assert ours.env == fresh_env_module


def test_module_env_id_works_in_compare(cartpole_policy, fresh_env_module):
    direction = np.eye(16)[0]
    result = rli.compare(cartpole_policy, fresh_env_module, rli.ablate(cartpole_policy, 1, direction), 3, 0)
    reference = rli.compare(cartpole_policy, "CartPole-v1", rli.ablate(cartpole_policy, 1, direction), 3, 0)
    assert result.treated.returns.tolist() == reference.treated.returns.tolist()


def test_module_env_id_works_in_interrogate_and_the_cli(tmp_path, fresh_env_module, capsys):
    policy = rli.load_policy(_net(), env="CartPole-v1")
    report = rli.interrogate(policy, fresh_env_module, target="obs[2]", episodes=2, n_obs=60, ks=[1], candidates=1,
                             progress=False)
    assert report.settings["env"] == fresh_env_module and report.pc1.baseline.env == fresh_env_module
    path = tmp_path / "tiny.pt"
    torch.save(_net(), path)  # a whole pickled nn.Sequential: loads safely
    code = main(["probe", str(path), "--env", fresh_env_module, "--target", "obs[2]", "--n", "60", "--no-controls",
                 "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["result"]["target"] == "obs[2]"


@pytest.mark.parametrize("env, message", [
    ("CartPol-v1", r"unknown environment 'CartPol-v1'.*Did you mean: `CartPole`"),
    ("no_such_module_xyz:CartPole-v1", r"cannot import module 'no_such_module_xyz'"),
    ("gymnasium:NoSuch-v0", r"unknown environment 'gymnasium:NoSuch-v0'"),
    (":CartPole-v1", r"is not 'module:EnvId'"),
    (3.5, r"env must be a gymnasium id"),
])
def test_bad_env_names_fail_the_same_way_everywhere_before_any_work(cartpole_policy, env, message, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("work started before the environment name was checked")

    monkeypatch.setattr("gymnasium.vector.SyncVectorEnv", never)
    monkeypatch.setattr(rli.ObsSet, "from_rollouts", classmethod(lambda cls, *a, **k: never()))
    calls = [lambda: rli.evaluate(cartpole_policy, env, episodes=2, seed=0),
             lambda: rli.compare(cartpole_policy, env, rli.ablate(cartpole_policy, 1, np.eye(16)[0]), 2, 0),
             lambda: rli.interrogate(cartpole_policy, env, target="obs[2]", episodes=2, progress=False)]
    for call in calls:
        with pytest.raises(rli.RliError, match=message):
            call()


def test_interrogate_checks_target_and_layer_before_any_rollout(cartpole_policy, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("rollouts started before the names were checked")

    monkeypatch.setattr(rli.ObsSet, "from_rollouts", classmethod(lambda cls, *a, **k: never()))
    with pytest.raises(rli.RliError, match=r"target 'obs\[9\]' names observation entry 9, but observations have 4"):
        rli.interrogate(cartpole_policy, "CartPole-v1", target="obs[9]", episodes=2, progress=False)
    grid = rli.ObsSet(np.zeros((10, 4)), labels={"speed": np.arange(10.0)})
    with pytest.raises(rli.RliError, match="have no label 'sped'; their labels: speed"):
        rli.interrogate(cartpole_policy, "CartPole-v1", target="sped", probe_obs=grid, episodes=2, progress=False)


@pytest.mark.parametrize("flags, message", [
    (["--layer", "9"], "layer '9' is out of range"),
    (["--target", "obs[7]"], r"--target 'obs\[7\]' names observation entry 7"),
    (["--env", "CartPol-v1"], "unknown environment 'CartPol-v1'"),
])
def test_cli_probe_checks_names_before_any_rollout(tmp_path, flags, message, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("rollouts started before the names were checked")

    monkeypatch.setattr(rli.ObsSet, "from_rollouts", classmethod(lambda cls, *a, **k: never()))
    path = tmp_path / "tiny.pt"
    torch.save(_net(), path)  # a whole pickled nn.Sequential: loads safely
    arguments = {"--env": "CartPole-v1", "--target": "obs[2]"}
    arguments.update(dict(zip(flags[::2], flags[1::2])))
    code = main(["probe", str(path), *itertools.chain.from_iterable(arguments.items())])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert re.search(message, err), err


# ----------------------------------------------------------------------------------------- targets
@pytest.fixture
def probed():
    torch.manual_seed(1)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 24), nn.Tanh(), nn.Linear(24, 2)))
    x = np.random.default_rng(0).normal(size=(400, 4))
    return policy, x


@pytest.mark.parametrize("as_obsset", [False, True])
def test_obs_entry_targets_work_in_probe_probe_layers_polarity_and_erase(probed, as_obsset):
    policy, x = probed
    obs = rli.ObsSet(x) if as_obsset else x
    column = x[:, 2].copy()
    by_name = rli.probe(policy, obs, "obs[2]", 1, controls=False)
    by_array = rli.probe(policy, x, column, 1, controls=False)
    assert by_name.target == "obs[2]" and by_name.r2 == by_array.r2 and by_name.fold_scores == by_array.fold_scores
    assert rli.probe_layers(policy, obs, "obs[2]", controls=False).r2 == \
        rli.probe_layers(policy, x, column, controls=False).r2
    polar = rli.polarity_test(policy, obs, "obs[2]", sensors=[2], layer=1)
    assert polar.r2_normal == rli.polarity_test(policy, x, column, sensors=[2], layer=1).r2_normal
    erased, reference = rli.erase(policy, 1, obs, "obs[2]"), rli.erase(policy, 1, x, column)
    with erased:
        after_name = rli.capture(policy, x, [1])[1]
    with reference:
        after_array = rli.capture(policy, x, [1])[1]
    np.testing.assert_array_equal(after_name, after_array)


def test_named_array_targets_carry_their_name_and_the_same_numbers(probed):
    policy, x = probed
    upwash = x[:, 0] - x[:, 1]
    named = rli.probe(policy, x, ("upwash", upwash), 1, seed=3)
    plain = rli.probe(policy, x, upwash, 1, seed=3)
    assert (named.target, plain.target) == ("upwash", "target")
    assert named.r2 == plain.r2 and named.controls == plain.controls
    assert rli.probe_layers(policy, x, ("upwash", upwash), controls=False)[1].target == "upwash"
    assert rli.polarity_test(policy, x, ("upwash", upwash), sensors=[0], layer=1).target == "upwash"
    assert "'upwash'" in str(named)


@pytest.mark.parametrize("target, message", [
    ("obs[4]", r"target 'obs\[4\]' names observation entry 4, but observations have 4 entries"),
    ("speed", r"'speed' is a label name, but the observations are a plain array"),
    (("", np.zeros(5)), "must not be empty"),
    (("a", "b"), "second item of \\(name, array\\) must be the values"),
])
def test_bad_targets_fail_before_any_capture(probed, target, message, monkeypatch):
    policy, x = probed

    def never(*args, **kwargs):
        raise AssertionError("activations were captured before the target was checked")

    monkeypatch.setattr("rli.probes.iter_activations", never)
    monkeypatch.setattr("rli.probes.capture", never)
    with pytest.raises(rli.RliError, match=message):
        rli.probe(policy, x[:5], target, 1)


# ------------------------------------------------------------------------- names reach the metrics
def test_two_different_unnamed_array_targets_in_one_test_are_an_error_named_ones_are_not(probed):
    from pytest_rli.assertions import assert_probe_r2
    from pytest_rli.recording import TestContext, recording

    policy, x = probed
    first, second = x[:, 0] - x[:, 1], x[:, 2] + x[:, 3]
    with recording(TestContext(nodeid="named")) as context:
        assert_probe_r2(policy=policy, obs=x, layer=1, target=("diff", first), min=0.5, controls=False)
        assert_probe_r2(policy=policy, obs=x, layer=1, target=("total", second), min=0.5, controls=False)
    assert [m.key for m in context.records] == ["assert_probe_r2[1:diff]", "assert_probe_r2[1:total]"]
    assert [m.target for m in context.records] == ["diff", "total"]
    with recording(TestContext(nodeid="same array twice")) as context:
        assert_probe_r2(policy=policy, obs=x, layer=1, target=first, min=0.5, controls=False)
        assert_probe_r2(policy=policy, obs=x, layer=1, target=first.copy(), min=0.5, controls=False)
    assert [m.key for m in context.records] == ["assert_probe_r2[1:target]", "assert_probe_r2[1:target]#2"]
    with recording(TestContext(nodeid="unnamed")) as context:
        assert_probe_r2(policy=policy, obs=x, layer=1, target=first, min=0.5, controls=False)
        with pytest.raises(rli.RliError, match=r"two different unnamed array targets .* name them: "
                                               r"target=\('upwash', values\)"):
            assert_probe_r2(policy=policy, obs=x, layer=1, target=second, min=0.5, controls=False)


def test_target_names_reach_the_summary_the_baseline_and_junit(pytester):
    pytester.makepyfile("""
        import numpy as np, torch, torch.nn as nn, rli
        from pytest_rli.assertions import assert_probe_r2

        def test_two_named_targets():
            torch.manual_seed(1)
            policy = rli.load_policy(nn.Sequential(nn.Linear(4, 24), nn.Tanh(), nn.Linear(24, 2)))
            x = np.random.default_rng(0).normal(size=(300, 4))
            assert_probe_r2(policy=policy, obs=x, layer=1, target=("upwash", x[:, 0] - x[:, 1]), min=0.5,
                            controls=False)
            assert_probe_r2(policy=policy, obs=x, layer=1, target=("lift", x[:, 2]), min=0.5, controls=False)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--rli-baseline=base.json", "--rli-update-baseline",
                                "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*assertion*layer*target*metric*",
                                 "*test_two_named_targets*probe_r2*1*upwash*r2*",
                                 "*test_two_named_targets*probe_r2*1*lift*r2*"])
    stored = json.loads((pytester.path / "base.json").read_text())["tests"]
    entry = stored["test_target_names_reach_the_summary_the_baseline_and_junit.py::test_two_named_targets"]
    assert sorted(entry) == ["assert_probe_r2[1:lift]", "assert_probe_r2[1:upwash]"]
    assert {metric["target"] for metric in entry.values()} == {"upwash", "lift"}
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="rli:assert_probe_r2[1:upwash]:r2"' in junit and 'name="rli:assert_probe_r2[1:lift]:r2"' in junit
