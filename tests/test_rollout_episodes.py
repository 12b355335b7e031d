"""Rollout observations over enough whole episodes for probes that split by episode (issue 17).

``ObsSet.from_rollouts(..., episodes=E)`` runs E whole episodes and keeps n observations spread
evenly over every visited step. The reference for every row is an independent plain rollout of
all those steps (``episodes=None``, ``n`` = every visited step, the same seeds): the kept rows,
labels and recurrent states must be exactly its rows at ``⌊k·T/n⌋``. The plugin's default
``rli_obs``, ``rli probe`` and ``rli interrogate`` collect this way, so a good CartPole policy
(500-step episodes) gives 20 groups for the grouped K-fold, not the 10 (or 1) of n consecutive steps.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli import protocol, recurrent
from rli.cli import main
from tests.conftest import build_sb3

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
CARTPOLE = ROOT / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


@pytest.fixture(scope="module")
def small():
    """A random feed-forward CartPole policy: episodes of about 10–60 steps."""
    torch.manual_seed(3)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)), env="CartPole-v1")


def _full(env, policy, seed: int, total: int, **kwargs):
    """The plain rollout of every step the episodes visit (an independent reference)."""
    return rli.ObsSet.from_rollouts(env, policy, n=total, seed=seed, **kwargs)


# ------------------------------------------------------------------------------------ from_rollouts
def test_episodes_keep_n_rows_spread_evenly_over_whole_episodes(small):
    obs = rli.ObsSet.from_rollouts("CartPole-v1", small, n=40, seed=7, episodes=6)
    total = obs.meta["visited_steps"]
    assert total > 40, "the test needs more visited steps than kept rows"
    full = _full("CartPole-v1", small, 7, total)
    assert sorted(set(full.labels["episode"].tolist())) == list(range(6)), "the plain rollout covers the same 6"
    assert len(obs) == 40 and sorted(set(obs.labels["episode"].tolist())) == list(range(6))
    index = (np.arange(40) * total) // 40
    np.testing.assert_array_equal(obs.obs, full.obs[index])
    for name in full.labels:
        np.testing.assert_array_equal(obs.labels[name], full.labels[name][index])
    lengths = np.bincount(full.labels["episode"])
    kept = np.bincount(obs.labels["episode"], minlength=6)
    assert np.all(np.abs(kept - 40 * lengths / total) <= 1), (kept, lengths)  # in proportion to each length
    assert obs.meta["episodes"] == 6 and obs.meta["subsampled_every"] == pytest.approx(total / 40)
    again = rli.ObsSet.from_rollouts("CartPole-v1", small, n=40, seed=7, episodes=6)
    assert again.fingerprint == obs.fingerprint and again.meta == obs.meta


def test_episodes_visiting_fewer_steps_than_n_keep_them_all(small):
    obs = rli.ObsSet.from_rollouts("CartPole-v1", small, n=100_000, seed=0, episodes=4)
    total = obs.meta["visited_steps"]
    assert len(obs) == total < 100_000 and obs.meta["subsampled_every"] == 1.0
    assert obs.fingerprint == _full("CartPole-v1", small, 0, total).fingerprint


def test_max_episode_steps_caps_every_episode():
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 1)), env="Pendulum-v1")  # 200-step episodes
    obs = rli.ObsSet.from_rollouts("Pendulum-v1", policy, n=100, seed=0, episodes=3, max_episode_steps=7)
    assert len(obs) == 21 and obs.meta["visited_steps"] == 21
    assert obs.labels["step"].tolist() == list(range(7)) * 3
    assert obs.labels["episode"].tolist() == [0] * 7 + [1] * 7 + [2] * 7


@pytest.mark.parametrize("episodes", [0, -2, True, 2.5, "3"])
def test_episodes_must_be_a_positive_count(small, episodes):
    with pytest.raises(rli.RliError, match=r"^episodes must be a positive integer"):
        rli.ObsSet.from_rollouts("CartPole-v1", small, n=10, seed=0, episodes=episodes)


class _Endless(gym.Env):
    """An env that never ends its episodes and states no time limit."""

    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}


def test_an_episode_that_never_ends_needs_max_episode_steps(small, monkeypatch):
    from gymnasium.envs.classic_control import CartPoleEnv

    from rli import rollout

    monkeypatch.setattr(rollout, "UNLIMITED_EPISODE_STEPS", 50)
    with pytest.raises(rli.RliError, match=r"episode 0 .* has run 50 steps without ending.*max_episode_steps="):
        rli.ObsSet.from_rollouts(_Endless(), small, n=10, seed=0, episodes=2)
    capped = rli.ObsSet.from_rollouts(_Endless(), small, n=10, seed=0, episodes=2, max_episode_steps=60)
    assert len(capped) == 10 and capped.meta["visited_steps"] == 120
    ends = rli.ObsSet.from_rollouts(CartPoleEnv(), small, n=10, seed=0, episodes=2)  # no stated limit, but it ends
    assert sorted(set(ends.labels["episode"].tolist())) == [0, 1]
    limited = rli.ObsSet.from_rollouts(lambda: gym.wrappers.TimeLimit(_Endless(), 30), small, n=10, seed=0,
                                       episodes=2)
    assert limited.meta["visited_steps"] == 60


def test_recurrent_kept_rows_keep_their_own_states_and_replay_refuses_them():
    policy = rli.load_policy(build_sb3("RecurrentPPO"))
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=25, seed=0, episodes=3)
    total = obs.meta["visited_steps"]
    assert total > 25 and sorted(set(obs.labels["episode"].tolist())) == [0, 1, 2]
    full = _full("CartPole-v1", policy, 0, total)
    index = (np.arange(25) * total) // 25
    assert obs.states.keys() == full.states.keys() and obs.meta[recurrent.STATE_OF] == policy.fingerprint
    for name, values in full.states.items():
        np.testing.assert_array_equal(obs.states[name], values[index])
    layer = "lstm_actor"
    np.testing.assert_allclose(rli.capture(policy, obs, layers=[layer])[layer],
                               rli.capture(policy, full, layers=[layer])[layer][index], atol=1e-6)
    with pytest.raises(rli.RliError, match=r"keep one step in .*recorded states"):
        rli.capture(policy, obs, layers=[layer], recurrent_state="replay")
    gaps = full[np.flatnonzero(full.labels["step"] % 2 == 0)]  # steps 0, 2, 4, ... of every episode
    with pytest.raises(rli.RliError, match="its steps have gaps"):
        recurrent.replay(policy, gaps)


# ------------------------------------------------------------------------------------------ plugin
PLUGIN_TEST = """
import rli


def test_default_obs_split_by_episode(rli_policy, rli_obs):
    assert len(rli_obs) == {size} and rli_obs.meta["episodes"] == 20
    assert len(set(rli_obs.labels["episode"].tolist())) == 20
    result = rli.probe(rli_policy, rli_obs, "obs[2]", 1, controls=False)
    assert result.n_groups == 20 and result.split.startswith("grouped by episode"), result.split
"""


def _plugin_run(pytester, policy: Path, size: int, extra: str = ""):
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    pytester.makeini(f"[pytest]\nrli_policy = {policy}\nrli_env = CartPole-v1\nrli_obs_size = {size}\n{extra}")
    pytester.makepyfile(test_obs=PLUGIN_TEST.format(size=size))
    return pytester.runpytest("-p", "no:cacheprovider", "test_obs.py")


def test_plugin_default_obs_spans_20_episodes(pytester, sb3_zip):
    _, path = sb3_zip("A2C")  # untrained CartPole: short episodes, so the default 20 episodes are quick
    _plugin_run(pytester, path, 150).assert_outcomes(passed=1)


@pytest.mark.slow
def test_plugin_default_obs_on_the_cartpole_checkpoint_spans_20_episodes(pytester):
    _plugin_run(pytester, CARTPOLE, 5000).assert_outcomes(passed=1)


@pytest.mark.parametrize("value", ["1", "0", "x"])
def test_rli_obs_episodes_must_be_at_least_two(pytester, value):
    pytester.makeini(f"[pytest]\nrli_obs_episodes = {value}\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the rli_obs_episodes ini key must be an integer of at least 2*"])


# ---------------------------------------------------------------------------------- CLI, interrogate
def test_cli_and_protocol_defaults_agree():
    from rli import cli, defaults

    signature = inspect.signature(rli.interrogate).parameters
    helped = io.StringIO()
    with contextlib.redirect_stdout(helped), contextlib.suppress(SystemExit):
        cli.main(["interrogate", "--help"])
    for name in ("episodes", "n_obs", "obs_episodes"):
        value = getattr(defaults, name.upper())
        assert getattr(protocol, f"DEFAULT_{name.upper()}") == value == signature[name].default
        assert f"(default: {value})" in helped.getvalue()
    args = cli._parser().parse_args(["probe", "x.zip"])
    assert args.episodes is None and args.n is None, "unset flags take rli.protocol's defaults"


def test_rli_probe_collects_whole_episodes_by_default(sb3_zip, capsys):
    _, path = sb3_zip("A2C")
    assert main(["probe", str(path), "--env", "CartPole-v1", "--target", "obs[2]", "--n", "120", "--no-controls",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "spread over 20 episodes (seeds 0..19)" in data["observations"]
    assert data["result"]["n_groups"] == 20, data["result"]["split"]


def test_interrogate_collects_whole_episodes_after_every_evaluation_seed(small):
    report = rli.interrogate(small, "CartPole-v1", target="obs[2]", episodes=2, n_obs=150, ks=[1], candidates=1,
                             progress=False)
    assert report.settings["obs_episodes"] == protocol.DEFAULT_OBS_EPISODES == 20
    assert report.settings["rollout_seed"] == 4, "after the selection (0, 1) and confirmation (2, 3) seeds"
    assert report.probe.n_groups == 20 and "spread over 20 episodes (seeds 4..23)" in report.settings["rollout_obs"]
    with pytest.raises(rli.RliError, match="obs_episodes must be an integer of at least 2"):
        rli.interrogate(small, "CartPole-v1", target="obs[2]", obs_episodes=1)


@pytest.mark.slow
def test_cli_defaults_on_the_cartpole_checkpoint_give_20_groups(capsys):
    assert main(["probe", str(CARTPOLE), "--target", "obs[2]", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["n_groups"] == 20 and data["result"]["n"] == protocol.DEFAULT_N_OBS
    report = rli.interrogate(str(CARTPOLE), "CartPole-v1", target="obs[2]", episodes=2, ks=[1], candidates=1,
                             progress=False)
    assert report.probe.n_groups == 20 and report.probe.n == protocol.DEFAULT_N_OBS


# ------------------------------------------------------------------------------- null simulation
def _pendulum_rollouts(n: int, episodes: int):
    """A random policy's Pendulum rollouts: 200-step episodes of slowly drifting, smooth states."""
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)), env="Pendulum-v1")
    return policy, rli.ObsSet.from_rollouts("Pendulum-v1", policy, n=n, seed=0, episodes=episodes)


@pytest.mark.slow
def test_default_collection_keeps_the_grouped_probe_calibrated_on_episode_constant_targets():
    """Null: a target that is an N(0,1) constant per episode, unrelated to the observations, on observations
    collected as the defaults do (20 whole episodes, n spread over them); "decodable" = CI low > 0. The count
    of false positives over R draws must not exceed the 99th percentile of Binomial(R, 0.05). Power: the
    angular velocity plus per-episode noise (SD 0.3) is found in every draw."""
    from scipy import stats

    policy, obs = _pendulum_rollouts(400, 20)
    assert len(set(obs.labels["episode"].tolist())) == 20 and obs.meta["subsampled_every"] == 10.0
    runs = 100
    rng = np.random.default_rng(17)
    false_positives = found = 0
    for r in range(runs):
        noise = rng.normal(size=20)[obs.labels["episode"]]
        null = rli.probe(policy, obs, ("null", noise), 1, controls=False, seed=r)
        assert null.n_groups == 20
        false_positives += null.ci[0] > 0
        planted = rli.probe(policy, obs, ("planted", obs.obs[:, 2] + 0.3 * noise), 1, controls=False, seed=r)
        found += planted.ci[0] > 0
    assert false_positives <= stats.binom.ppf(0.99, runs, 0.05), f"{false_positives}/{runs} false positives"
    assert found == runs, f"planted signal found in {found}/{runs}"
