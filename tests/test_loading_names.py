"""Which VecNormalize pickle belongs to a checkpoint (#19): one rule, :func:`vecnormalize_beside`, for
:func:`rli.load_policy` and the training-run discovery; SB3's own ``VecNormalize.load`` is the reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import rli
from rli.loading.normalization import vecnormalize_beside
from rli.runs.checkpoints import discover

SAVES = (64, 128)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real CheckpointCallback run: CartPole PPO behind VecNormalize, n_steps 64, saved twice with its statistics."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rli.threads import one_torch_thread

    root = tmp_path_factory.mktemp("run")
    with one_torch_thread():
        env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0), norm_reward=False)
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [16], "activation_fn": torch.nn.Tanh})
        model.learn(total_timesteps=SAVES[-1], callback=CheckpointCallback(save_freq=64, save_path=str(root),
                                                                            save_vecnormalize=True))
        env.close()
    return root


def _sb3_normalised(pkl: Path, obs: np.ndarray) -> np.ndarray:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize.load(str(pkl), make_vec_env("CartPole-v1", n_envs=1))
    try:
        normalised = env.normalize_obs(obs)
        assert isinstance(normalised, np.ndarray)
        return normalised
    finally:
        env.close()


def test_checkpoint_callback_statistics_are_found_and_equal_sb3s(run):
    from stable_baselines3 import PPO

    obs = np.random.default_rng(0).normal(scale=2.0, size=(64, 4)).astype(np.float32)
    normalised = []
    for step in SAVES:
        zip_path, pkl = run / f"rl_model_{step}_steps.zip", run / f"rl_model_vecnormalize_{step}_steps.pkl"
        assert zip_path.is_file() and pkl.is_file()  # SB3's names, as the callback wrote them
        policy = rli.load_policy(zip_path)  # no normalizer= given: found by its name
        assert policy.normalizer is not None and pkl.name in policy.normalizer.source
        expected = _sb3_normalised(pkl, obs)
        np.testing.assert_allclose(policy.normalizer(obs), expected, rtol=1e-6, atol=1e-6)
        actions, _ = PPO.load(zip_path, device="cpu").predict(expected, deterministic=True)
        np.testing.assert_array_equal(policy.act(obs), actions)
        normalised.append(expected)
    assert not np.allclose(*normalised)  # each save has its own statistics, and each checkpoint got its own


def test_discovery_and_load_policy_follow_the_same_rule(run):
    found = {Path(c.path).name: c.vecnormalize for c in discover(str(run / "rl_model_*_steps.zip"))}
    assert found == {f"rl_model_{n}_steps.zip": str(vecnormalize_beside(run / f"rl_model_{n}_steps.zip"))
                     for n in SAVES}
    assert found["rl_model_64_steps.zip"] == str(run / "rl_model_vecnormalize_64_steps.pkl")


def _copy(run: Path, where: Path, step: int = 64) -> Path:
    target = where / f"rl_model_{step}_steps.zip"
    shutil.copy(run / target.name, target)
    return target


@pytest.mark.parametrize("name", ["{stem}_vecnormalize.pkl", "{stem}.vecnormalize.pkl", "{stem}/vecnormalize.pkl"])
def test_two_names_for_one_checkpoint_is_an_error_naming_both_and_the_fix(run, tmp_path, name):
    target = _copy(run, tmp_path)
    callback = tmp_path / "rl_model_vecnormalize_64_steps.pkl"
    shutil.copy(run / callback.name, callback)
    other = tmp_path / name.format(stem=target.stem)
    other.parent.mkdir(exist_ok=True)
    shutil.copy(run / "rl_model_vecnormalize_128_steps.pkl", other)
    with pytest.raises(rli.RliError) as info:
        rli.load_policy(target)
    message = str(info.value)
    assert "\n" not in message and str(callback) in message and str(other) in message and "normalizer=" in message
    with pytest.raises(rli.RliError, match="VecNormalize files beside it"):
        discover(str(target))  # the training-run discovery follows the same rule
    chosen = rli.load_policy(target, normalizer=callback)  # the fix the message names
    assert chosen.normalizer is not None and callback.name in chosen.normalizer.source
    assert rli.load_policy(target, normalizer=False).normalizer is None


def test_a_file_for_the_checkpoint_beats_one_for_the_whole_directory(run, tmp_path):
    target = _copy(run, tmp_path)
    shutil.copy(run / "rl_model_vecnormalize_128_steps.pkl", tmp_path / "vecnormalize.pkl")
    assert vecnormalize_beside(target) == tmp_path / "vecnormalize.pkl"  # alone, the shared one is used
    shutil.copy(run / "rl_model_vecnormalize_64_steps.pkl", tmp_path / "rl_model_vecnormalize_64_steps.pkl")
    assert vecnormalize_beside(target) == tmp_path / "rl_model_vecnormalize_64_steps.pkl"
    policy = rli.load_policy(target)
    assert policy.normalizer is not None and "vecnormalize_64_steps" in policy.normalizer.source
    assert vecnormalize_beside(tmp_path / "model.zip") == tmp_path / "vecnormalize.pkl"  # no file of its own
    (tmp_path / "vecnormalize.pkl").unlink()
    assert vecnormalize_beside(tmp_path / "model.zip") is None


def test_an_explicit_normalizer_means_no_search(run, tmp_path):
    """With normalizer= given, a damaged (or crafted) pickle beside the zip is not even read."""
    target = _copy(run, tmp_path)
    (tmp_path / "rl_model_vecnormalize_64_steps.pkl").write_bytes(b"not a pickle")
    with pytest.raises(rli.RliError, match="not a readable VecNormalize pickle"):
        rli.load_policy(target)
    assert rli.load_policy(target, normalizer=False).normalizer is None
    given = rli.load_policy(target, normalizer=run / "rl_model_vecnormalize_128_steps.pkl")
    assert given.normalizer is not None and "vecnormalize_128_steps" in given.normalizer.source
