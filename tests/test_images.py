"""Channels-last images: an SB3 policy trained on an (H, W, C) env is saved with the transposed (C, H, W) space, and
SB3's ``predict`` transposes channels-last input itself (``maybe_transpose``). rli takes such observations exactly
where SB3 does, keeps them in the layout given (``from_rollouts`` rows as the env produced them, ``"obs[i]"`` indexing
that layout) and transposes them only on the way into the network. Every check is against SB3 itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from torch import nn

import rli
from rli.policy import ImageScaleWarning
from rli.space_fit import check_env_fit, flatten_batch
from rli.threads import one_torch_thread

sb3 = pytest.importorskip("stable_baselines3")

from tests.zoo.build import checkpoint  # noqa: E402  (after the importorskip: the zoo needs SB3)

ENV = "tests.zoo.envs:ZooImageLast-v0"
FEATURES = "features_extractor.linear.1"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """These networks are tiny: on a busy machine more intra-op threads only contend."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def hwc() -> tuple[Any, rli.Policy]:
    """The zoo's CnnPolicy trained on the channels-last image env: SB3's own load, and rli's."""
    path = checkpoint("ppo_cnn_hwc")
    return sb3.PPO.load(path, device="cpu"), rli.load_policy(path)


def _hooked(model: Any, module: nn.Module, obs: Any) -> np.ndarray:
    """``module``'s output while SB3's ``predict`` runs on ``obs``, one flat row per observation."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().double().numpy()))
    try:
        model.predict(obs, deterministic=True)
    finally:
        handle.remove()
    return seen[0].reshape(len(seen[0]), -1)


def _sb3_loop(model: Any, env: gym.Env, *, seed: int, steps: int | None = None,
              episodes: int | None = None) -> tuple[list[Any], list[float]]:
    """What SB3's ``predict`` visits: episode *i* reset with ``seed + i``; frames as the env gives them, returns."""
    frames, returns = [], []
    for episode in range(episodes or 10**6):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            frames.append(obs)
            if steps is not None and len(frames) >= steps:
                return frames, returns
            action = model.predict(obs, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return frames, returns


def test_channels_last_images_reach_the_network_as_sb3_predict_sends_them(hwc) -> None:
    model, policy = hwc
    assert policy.obs_shape == (3, 36, 36) and dict(policy.channels_last_shapes) == {"": (36, 36, 3)}
    frames = np.stack(_sb3_loop(model, gym.make(ENV), seed=7, steps=48)[0])
    assert frames.shape == (48, 36, 36, 3) and frames.dtype == np.uint8
    expected = model.predict(frames, deterministic=True)[0]
    np.testing.assert_array_equal(policy.act(frames), expected)
    np.testing.assert_array_equal(policy.act(frames.transpose(0, 3, 1, 2)), expected)  # the network's own layout
    np.testing.assert_array_equal(policy.act(frames[5]), expected[5:6])  # one observation
    reference = _hooked(model, model.policy.features_extractor.linear[1], frames)
    assert reference.std(axis=0).max() > 1e-3  # the frames differ where the network looks
    np.testing.assert_allclose(rli.capture(policy, frames, [FEATURES])[FEATURES], reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(rli.RliError, match=r"takes \(n, 3, 36, 36\) or channels last \(n, 36, 36, 3\)"):
        policy.act(frames[:, :, :, :2])
    with pytest.warns(ImageScaleWarning, match=r"floats in \[0, 1\]"):
        policy.act(frames / 255.0)


def test_rollouts_hold_the_frames_as_the_env_gives_them_and_evaluate_runs_on_them(hwc) -> None:
    model, policy = hwc
    obs = rli.ObsSet.from_rollouts(ENV, policy, n=30, seed=4)
    frames, _ = _sb3_loop(model, gym.make(ENV), seed=4, steps=30)
    assert obs.obs.shape == (30, 36, 36, 3) and obs.obs.dtype == np.uint8
    np.testing.assert_array_equal(obs.obs, np.stack(frames))
    result = rli.evaluate(policy, ENV, episodes=2, seed=4)
    np.testing.assert_allclose(result.returns, _sb3_loop(model, gym.make(ENV), seed=4, episodes=2)[1], atol=1e-9)


def test_obs_entries_index_the_frames_as_the_user_holds_them(hwc) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_score

    model, policy = hwc
    frames = np.stack(_sb3_loop(model, gym.make(ENV), seed=0, steps=120)[0])
    held = frames.reshape(len(frames), -1).astype(np.float64)
    network_order = frames.transpose(0, 3, 1, 2).reshape(len(frames), -1).astype(np.float64)
    differs = [k for k in np.argsort(-held.std(axis=0)) if not np.array_equal(held[:, k], network_order[:, k])]
    k = int(differs[0])  # a pixel that varies, and whose index means another pixel in the network's layout
    acts = _hooked(model, model.policy.features_extractor.linear[1], frames)
    got = rli.probe(policy, frames, f"obs[{k}]", FEATURES, alphas=1.0, controls=False, seed=0)
    expected = cross_val_score(Ridge(1.0), acts, held[:, k], cv=KFold(5, shuffle=True, random_state=0), scoring="r2")
    np.testing.assert_allclose(got.fold_scores, expected, rtol=1e-4, atol=1e-4)


def test_only_a_policy_that_transposes_fits_a_channels_last_env(hwc) -> None:
    _, policy = hwc
    env = gym.make(ENV)
    check_env_fit(policy, env.observation_space, env.action_space, ENV)
    with pytest.raises(rli.RliError, match=r"have shape \(36, 36, 4\) but the policy takes \(3, 36, 36\) "
                                           r"\(or channels-last \(36, 36, 3\)\)"):
        check_env_fit(policy, spaces.Box(0, 255, (36, 36, 4), np.uint8), env.action_space, "a 4-channel env")
    # a plain torch module takes its own layout only, as torch does: said before any rollout
    net = nn.Sequential(nn.Conv2d(3, 4, 6, stride=6), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    plain = rli.load_policy(net, observation_space=spaces.Box(0, 255, (3, 36, 36), np.uint8),
                            action_space=spaces.Discrete(3))
    assert dict(plain.channels_last_shapes) == {}
    with pytest.raises(rli.RliError, match=r"have shape \(36, 36, 3\) but the policy takes \(3, 36, 36\);"):
        rli.evaluate(plain, ENV, episodes=1, seed=0)
    with pytest.raises(rli.RliError, match=r"observations have shape \(2, 36, 36, 3\)"):
        plain.act(np.zeros((2, 36, 36, 3), np.uint8))


class _Cube(gym.Env):
    """uint8 images of shape (3, 3, 3): channels, height and width alike."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, (3, 3, 3), np.uint8)
        self.action_space = spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


def test_a_square_image_is_taken_channels_first_as_sb3_takes_it() -> None:
    model = sb3.PPO("MlpPolicy", _Cube(), seed=0, device="cpu", n_steps=16, batch_size=16)
    policy = rli.load_policy(model)
    assert dict(policy.channels_last_shapes) == {"": (3, 3, 3)}  # an image space, so both layouts exist...
    obs = np.random.default_rng(0).integers(0, 256, (64, 3, 3, 3), dtype=np.uint8)
    reference = _hooked(model, model.policy.mlp_extractor.policy_net[0], obs)
    got = rli.capture(policy, obs, ["mlp_extractor.policy_net.0"])["mlp_extractor.policy_net.0"]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)  # ...but the policy's own wins, as in SB3
    swapped = rli.capture(policy, obs.transpose(0, 3, 1, 2), ["mlp_extractor.policy_net.0"])
    assert not np.allclose(swapped["mlp_extractor.policy_net.0"], reference, atol=1e-3)
    np.testing.assert_array_equal(policy.act(obs), model.predict(obs, deterministic=True)[0])


class _Camera(gym.Env):
    """A Dict observation with a channels-last camera image and a state vector (a robot with a camera)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(camera=spaces.Box(0, 255, (36, 36, 3), np.uint8),
                                             state=spaces.Box(-1.0, 1.0, (3,), np.float32))
        self.action_space = spaces.Discrete(3)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"camera": self.np_random.integers(0, 256, (36, 36, 3), dtype=np.uint8),
                "state": self.np_random.uniform(-1, 1, 3).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), float(action) - 1.0 + float(self._t), False, self._t >= 6, {}


def test_dict_observations_with_a_channels_last_image_entry() -> None:
    model = sb3.PPO("MultiInputPolicy", _Camera(), seed=0, device="cpu", n_steps=16, batch_size=16,
                    policy_kwargs={"features_extractor_kwargs": {"cnn_output_dim": 8}, "net_arch": [8]})
    assert model.observation_space["camera"].shape == (3, 36, 36)  # SB3 wrapped the env in VecTransposeImage
    policy = rli.load_policy(model)
    assert dict(policy.channels_last_shapes) == {"camera": (36, 36, 3)}
    env = _Camera()
    frames, _ = _sb3_loop(model, env, seed=0, steps=20)
    batch = {key: np.stack([frame[key] for frame in frames]) for key in ("camera", "state")}
    np.testing.assert_array_equal(policy.act(batch), model.predict(batch, deterministic=True)[0])
    # held flat in gymnasium's order of the policy's space, the image channels first (as the network reads it)
    transposed = {"camera": batch["camera"].transpose(0, 3, 1, 2), "state": batch["state"]}
    rows = np.stack([spaces.flatten(model.observation_space, {k: v[i] for k, v in transposed.items()})
                     for i in range(20)])
    np.testing.assert_allclose(policy.prepare_obs(batch), rows)
    np.testing.assert_allclose(flatten_batch(model.observation_space, transposed), rows)
    obs = rli.ObsSet.from_rollouts(_Camera, policy, n=20, seed=0)
    np.testing.assert_allclose(obs.obs, rows)
    result = rli.evaluate(policy, _Camera, episodes=2, seed=3)
    np.testing.assert_allclose(result.returns, _sb3_loop(model, _Camera(), seed=3, episodes=2)[1], atol=1e-9)
    wrong = spaces.Dict(camera=spaces.Box(0, 255, (36, 3, 36), np.uint8), state=spaces.Box(-1, 1, (3,)))
    with pytest.raises(rli.RliError, match=r"observation key 'camera' is Box\(0, 255, \(36, 3, 36\), uint8\) but "
                                           r"the policy takes .*\(or channels-last \(36, 36, 3\)\)"):
        check_env_fit(policy, wrong, env.action_space, "a camera env")


def test_a_normaliser_reads_the_network_layout_whatever_layout_the_frames_come_in(hwc) -> None:
    rng = np.random.default_rng(0)
    norm = rli.ObsNormalizer(mean=rng.uniform(0, 60, (3, 36, 36)), var=rng.uniform(100, 900, (3, 36, 36)))
    policy = rli.load_policy(checkpoint("ppo_cnn_hwc"), normalizer=norm)
    obs = rli.ObsSet.from_rollouts(ENV, hwc[1], n=60, seed=1, episodes=6)
    chw = rli.ObsSet(obs.obs.transpose(0, 3, 1, 2), labels=dict(obs.labels))
    np.testing.assert_array_equal(policy.act(obs), policy.act(chw))
    np.testing.assert_allclose(policy.normalize(obs.obs), norm(chw.obs).transpose(0, 2, 3, 1))
    held, network = (rli.probe(policy, o, "col", FEATURES, control_seeds=1, seed=0) for o in (obs, chw))
    assert held.controls["raw_obs"] == pytest.approx(network.controls["raw_obs"], abs=1e-6)
    assert held.r2 == pytest.approx(network.r2, abs=1e-6)
