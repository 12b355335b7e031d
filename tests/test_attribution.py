"""rli.attribution against captum called directly, on the zoo and on planted networks.

The references never go through rli: captum's own classes on a forward function built here from the SB3
modules (``action_net(mlp_extractor.forward_actor(extract_features(obs)))``), SB3's ``predict`` for the greedy
actions, ``VecNormalize.normalize_obs`` for the normaliser, and the networks' own outputs for IG's completeness.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, LayerIntegratedGradients, Saliency
from captum.metrics import infidelity
from torch import nn

import rli
from pytest_rli.attribution_assertions import assert_attribution_in
from rli.attribution import attribute
from tests.doc_examples import python_blocks, run_blocks
from tests.test_interrupts import Tripwire, exactly_restored
from tests.test_zoo import load, reference

ROOT = Path(__file__).parent.parent
ERRORS = [KeyboardInterrupt(), RuntimeError("boom")]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _obs(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Observations near what the env produces (its own space, or a scaled normal for unbounded boxes)."""
    import gymnasium as gym

    space = load(name).observation_space
    rng = np.random.default_rng(seed)
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:  # the env's layout: channels last for _hwc
        frames = rng.integers(0, 256, size=(n, *space.shape), dtype=np.uint8)
        return np.ascontiguousarray(np.transpose(frames, (0, 2, 3, 1))) if name.endswith("_hwc") else frames
    return rng.normal(scale=0.5, size=(n, *space.shape)).astype(np.float32)


def _sb3_actor(model) -> callable:
    policy = model.policy

    def forward(x: torch.Tensor) -> torch.Tensor:
        return policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(x, policy.pi_features_extractor)))
    return forward


# ------------------------------------------------------------------------------------ agreement with captum
def test_ig_and_saliency_equal_captum_on_the_same_network():
    ref, policy = reference("ppo_cartpole"), load("ppo_cartpole")
    obs = _obs("ppo_cartpole", 24)
    actions, _ = ref.model.predict(obs, deterministic=True)
    forward = _sb3_actor(ref.model)
    x = torch.as_tensor(obs)
    base = torch.as_tensor(obs.mean(axis=0, keepdims=True).repeat(24, axis=0))
    target = torch.as_tensor(actions)
    expected, delta = IntegratedGradients(forward).attribute(x, baselines=base, target=target, n_steps=20,
                                                             return_convergence_delta=True)
    got = attribute(policy, obs, method="ig", baseline="mean", n_steps=20, batch_size=7)
    np.testing.assert_array_equal(got.target_index, actions)  # "action" is SB3's greedy action
    np.testing.assert_allclose(got.attributions, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.completeness, delta.detach().numpy(), atol=1e-5)
    sal = Saliency(forward).attribute(x.clone().requires_grad_(), target=target)
    np.testing.assert_allclose(attribute(policy, obs, method="saliency").attributions, sal.numpy(), rtol=1e-6)


def test_value_target_and_layer_ig_equal_captum():
    ref, policy = reference("ppo_cartpole"), load("ppo_cartpole")
    obs = _obs("ppo_cartpole", 16, seed=1)
    x = torch.as_tensor(obs)
    values = IntegratedGradients(lambda t: ref.model.policy.predict_values(t)).attribute(x, target=0, n_steps=16)
    np.testing.assert_allclose(attribute(policy, obs, target="value", n_steps=16).attributions,
                               values.detach().numpy(), rtol=1e-5, atol=1e-6)
    layer = policy.layer(3)
    lig = LayerIntegratedGradients(_sb3_actor(ref.model), ref.model.policy.get_submodule(layer.name))
    expected = lig.attribute(x, target=1, n_steps=16)
    got = attribute(policy, obs, target="action:1", method="layer_ig", layer=3, n_steps=16)
    assert got.layer == layer.name and got.attributions.shape == (16, layer.width)
    np.testing.assert_allclose(got.attributions, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert set(got.shares) == {f"unit[{i}]" for i in range(layer.width)}


def test_vecnormalize_is_inside_the_differentiated_function():
    """The gradient w.r.t. the raw observation is the gradient w.r.t. VecNormalize's output over its scale."""
    ref, policy = reference("a2c_pendulum_vecnorm"), load("a2c_pendulum_vecnorm")
    obs = np.random.default_rng(2).normal(scale=0.3, size=(12, 3)).astype(np.float32) + np.array([0.5, 0, 0], np.float32)
    normed = torch.as_tensor(ref.vecnormalize.normalize_obs(obs), dtype=torch.float32)
    assert normed.abs().max() < ref.vecnormalize.clip_obs  # no clipping: the chain rule is exact
    scale = np.sqrt(ref.vecnormalize.obs_rms.var + ref.vecnormalize.epsilon)
    sal = Saliency(_sb3_actor(ref.model)).attribute(normed.requires_grad_(), target=0).numpy()
    got = attribute(policy, obs, target="action:0", method="saliency")
    np.testing.assert_allclose(got.attributions, sal / scale, rtol=1e-4)
    assert any("normaliser" in note for note in got.notes)


def test_ig_completeness_holds():
    policy = load("ppo_cartpole")
    ref = reference("ppo_cartpole")
    obs = _obs("ppo_cartpole", 30, seed=3)
    result = attribute(policy, obs, target="action", n_steps=64)
    forward = _sb3_actor(ref.model)
    with torch.no_grad():
        f_x = forward(torch.as_tensor(obs)).numpy()[np.arange(30), result.target_index]
        f_b = forward(torch.zeros(30, 4)).numpy()[np.arange(30), result.target_index]
    np.testing.assert_allclose(result.outputs, f_x, rtol=1e-6)
    np.testing.assert_allclose(result.attributions.sum(axis=1), f_x - f_b, atol=2e-3 * np.abs(f_x - f_b).max())
    assert np.abs(result.completeness).max() < 2e-3 * np.abs(f_x - f_b).max()


@pytest.mark.parametrize("name", ["ppo_cnn_chw", "ppo_cnn_hwc"])
def test_images_channels_first_and_last(name):
    ref, policy = reference(name), load(name)
    obs = _obs(name, 6, seed=4)
    last = obs.shape[-1] == 3
    chw = np.transpose(obs, (0, 3, 1, 2)) if last else obs
    forward = _sb3_actor(ref.model)  # SB3's preprocessing divides the raw pixel values by 255 itself
    x = torch.as_tensor(chw, dtype=torch.float32)
    actions, _ = ref.model.predict(chw, deterministic=True)
    expected = IntegratedGradients(forward).attribute(x, target=torch.as_tensor(actions), n_steps=8).detach().numpy()
    got = attribute(policy, obs, n_steps=8)
    assert got.attributions.shape == obs.shape  # the layout the caller passed
    np.testing.assert_array_equal(got.target_index, actions)
    np.testing.assert_allclose(np.transpose(got.attributions, (0, 3, 1, 2)) if last else got.attributions, expected,
                               rtol=1e-4, atol=1e-7)
    assert len(got.shares) == 16 and abs(sum(s.share for s in got.shares.values()) - 1) < 1e-9  # a 4 × 4 grid
    conv = [layer for layer in policy.actor_layers if layer.shape is not None and len(layer.shape) == 3][-1]
    assert conv.type == "ReLU"  # the rectified maps of the last conv layer, as Grad-CAM reads them
    cam = LayerGradCam(forward, ref.model.policy.get_submodule(conv.name)).attribute(
        x, target=torch.as_tensor(actions), relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, (36, 36), "bilinear")[:, 0].detach().numpy()
    grad = attribute(policy, obs, method="gradcam", regions=(2, 2))
    assert grad.layer == conv.name and set(grad.shares) == {f"patch[{r},{c}]" for r in (0, 1) for c in (0, 1)}
    np.testing.assert_allclose(grad.attributions, cam, rtol=1e-4, atol=1e-8)


def test_channels_last_observations_attribute_as_their_transpose():
    policy = load("ppo_cnn_hwc")
    hwc = _obs("ppo_cnn_hwc", 5, seed=5)
    chw = np.ascontiguousarray(np.transpose(hwc, (0, 3, 1, 2)))
    mask = np.zeros((36, 36), dtype=bool)
    mask[:, :18] = True
    a = attribute(policy, hwc, method="saliency", regions={"left": mask})
    b = attribute(policy, chw, method="saliency", regions={"left": mask})
    np.testing.assert_allclose(np.transpose(a.attributions, (0, 3, 1, 2)), b.attributions, rtol=1e-5,
                               atol=1e-5 * np.abs(b.attributions).max())
    assert a.shares["left"].share == pytest.approx(b.shares["left"].share, rel=1e-5)


def test_every_kind_of_policy_attributes_its_greedy_action():
    """Discrete Q-networks, quantile networks, deterministic continuous actors, Dict observations, recurrent."""
    for name in ("dqn_cartpole", "qrdqn_cartpole", "trpo_cartpole"):
        obs = _obs(name, 10)
        actions, _ = reference(name).model.predict(obs, deterministic=True)
        result = attribute(load(name), obs, n_steps=8)
        np.testing.assert_array_equal(result.target_index, actions)
    for name in ("sac_pendulum", "td3_pendulum", "tqc_pendulum"):
        obs = _obs(name, 10)
        result = attribute(load(name), obs, n_steps=8)  # one action component: "action" is it
        scaled = reference(name).model.policy.scale_action(reference(name).model.predict(obs, deterministic=True)[0])
        np.testing.assert_allclose(result.outputs, scaled[:, 0], rtol=1e-4, atol=1e-5)
    goal = load("ppo_goal_dict")
    obs = rli.ObsSet.from_rollouts("tests.zoo.envs:ZooGoal-v0", goal, n=30, seed=0)
    result = attribute(goal, obs, target="action:0", n_steps=8)
    assert set(result.shares) == set(goal.observation_space.spaces)  # one region per key of the Dict
    with pytest.raises(rli.RliError, match="action:0"):
        attribute(goal, obs, n_steps=8)  # two continuous components: which one?


def test_recurrent_policy_holds_the_recorded_state_fixed():
    policy = load("recurrentppo_cartpole")
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=40, seed=0)
    result = attribute(policy, obs, n_steps=32)
    np.testing.assert_array_equal(result.target_index, policy.act(obs))  # the actions along the trajectory
    assert np.abs(result.completeness).max() < 1e-2 * np.abs(result.outputs).max()
    assert any("held fixed" in note for note in result.notes)
    fresh = attribute(policy, obs.obs, recurrent_state="fresh", n_steps=8)
    np.testing.assert_array_equal(fresh.target_index, policy.act(obs.obs, recurrent_state="fresh"))
    with pytest.raises(rli.RliError, match="recurrent"):
        attribute(policy, obs.obs)


# --------------------------------------------------------------------------------------------- planted
def _planted(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    with torch.no_grad():
        net[0].weight[:, 2:] = 0.0  # only inputs 0 and 1 reach the output
    return net


def _episodes(n_episodes: int, length: int, dim: int = 4, seed: int = 0) -> rli.ObsSet:
    rng = np.random.default_rng(seed)
    x = np.zeros((n_episodes, length, dim))
    x[:, 0] = rng.normal(size=(n_episodes, dim))
    for t in range(1, length):  # slowly drifting state within an episode
        x[:, t] = 0.9 * x[:, t - 1] + np.sqrt(1 - 0.81) * rng.normal(size=(n_episodes, dim))
    return rli.ObsSet(x.reshape(-1, dim).astype(np.float32), labels={"episode": np.repeat(np.arange(n_episodes), length)})


def test_planted_network_puts_every_share_on_inputs_0_and_1():
    policy = rli.load_policy(_planted(), env="CartPole-v1")
    obs = _episodes(8, 10)
    for method in ("ig", "saliency"):
        result = attribute(policy, obs, method=method, n_steps=16)
        assert result.grouped_by == "episode" and np.unique(result.groups).size == 8
        assert result.shares["obs[2]"].share == 0.0 and result.shares["obs[3]"].share == 0.0
        assert result.share_of([0, 1]).share == pytest.approx(1.0)
        assert result.share_of(["obs[0]", "obs[1]"]).share == pytest.approx(1.0)
    assert_attribution_in(policy=policy, obs=obs, inputs=[0, 1], min_share=0.99, n_steps=16)
    with pytest.raises(AssertionError, match=r"CI lower bound 0\.000 < min_share=0\.05"):
        assert_attribution_in(policy=policy, obs=obs, inputs=[2, 3], min_share=0.05, n_steps=16)


def test_share_ci_is_a_t_interval_over_episode_means():
    from scipy import stats

    policy = rli.load_policy(_planted(1), env="CartPole-v1")
    obs = _episodes(6, 7, seed=2)
    result = attribute(policy, obs, n_steps=16)
    a = np.abs(result.attributions)
    per_row = a[:, 0] / a.sum(axis=1)
    means = np.array([per_row[obs.labels["episode"] == e].mean() for e in range(6)])
    low, high = stats.t.interval(0.95, 5, loc=means.mean(), scale=stats.sem(means))
    share = result.shares["obs[0]"]
    assert share.share == pytest.approx(means.mean()) and share.ci == pytest.approx((max(low, 0), min(high, 1)))


def test_metrics_are_captums():
    policy = rli.load_policy(_planted(), env="CartPole-v1")
    obs = _episodes(2, 5).obs
    result = attribute(policy, obs, method="saliency", metrics=True, seed=3)
    assert result.infidelity.shape == (10,) and result.sensitivity.shape == (10,)
    assert np.all(np.isfinite(result.infidelity)) and np.all(result.sensitivity >= 0)
    spread = torch.as_tensor(obs.std(axis=0))
    torch.manual_seed(3)
    expected = infidelity(lambda t: _planted()(t), lambda t: ((n := torch.randn_like(t) * 0.1 * spread), t - n),
                          torch.as_tensor(obs), torch.as_tensor(result.attributions),
                          target=torch.as_tensor(result.target_index))
    np.testing.assert_allclose(result.infidelity, expected.numpy(), rtol=1e-5)
    again = attribute(policy, obs, method="saliency", metrics=True, seed=3)
    np.testing.assert_array_equal(again.infidelity, result.infidelity)  # seeded


# ------------------------------------------------------------------------------------ leaves nothing behind
@pytest.mark.parametrize("method", ["ig", "saliency", "layer_ig"])
@pytest.mark.parametrize("error", ERRORS, ids=["KeyboardInterrupt", "RuntimeError"])
def test_interrupted_attribution_leaves_the_policy_as_it_was(method, error):
    torch.manual_seed(0)
    wire = Tripwire()
    module = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), wire, nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    module.train()
    module[3].eval()
    policy = rli.load_policy(module, env="CartPole-v1")
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    layer = 3 if method == "layer_ig" else None
    with exactly_restored(policy):
        expected = attribute(policy, obs, method=method, layer=layer, n_steps=8, batch_size=5)
    with exactly_restored(policy):
        wire.arm(error, 3)
        with pytest.raises(type(error)):
            attribute(policy, obs, method=method, layer=layer, n_steps=8, batch_size=5)
    with exactly_restored(policy), pytest.raises(rli.RliError):
        attribute(policy, obs, method=method, target="action:7", layer=layer)
    again = attribute(policy, obs, method=method, layer=layer, n_steps=8, batch_size=5)
    np.testing.assert_array_equal(again.attributions, expected.attributions)  # deterministic, and nothing leaked


def test_gradcam_interrupted_leaves_the_policy_as_it_was():
    policy = load("ppo_cnn_chw")
    obs = _obs("ppo_cnn_chw", 4)
    conv = policy.module.get_submodule([lay.name for lay in policy.actor_layers if lay.type == "Conv2d"][-1])

    def boom(*_args):
        raise KeyboardInterrupt

    with exactly_restored(policy):
        handle = conv.register_forward_hook(boom)
        try:
            with pytest.raises(KeyboardInterrupt):
                attribute(policy, obs, method="gradcam")
        finally:
            handle.remove()


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_is_one_line_rli_error_naming_the_argument():
    policy = rli.load_policy(_planted(), env="CartPole-v1")
    plain = rli.load_policy(_planted())
    obs = _episodes(3, 4)
    cases = [
        (dict(target="q"), "target must be"), (dict(target="value:1"), "target must be"),
        (dict(target="value"), "critic"), (dict(method="shap"), "method must be"),
        (dict(baseline="black"), "baseline must be"), (dict(baseline=np.zeros(3)), "baseline has shape"),
        (dict(method="saliency", baseline="mean"), "takes no baseline"), (dict(method="gradcam"), "convolutional"),
        (dict(method="layer_ig", metrics=True), "metrics=True"), (dict(n_steps=0), "n_steps"),
        (dict(regions={"a": np.zeros(3, bool)}), "mask of shape"), (dict(regions={"a": [9]}), "outside"),
        (dict(regions=(2, 2)), "grid of image patches"), (dict(groups="run"), "groups='run'"),
        (dict(groups=np.zeros(5)), "groups has shape"), (dict(layer=1), "layer= is for"),
        (dict(method="layer_ig", layer="nope"), "unknown layer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(rli.RliError, match=re.escape(message)) as info:
            attribute(policy, obs, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(rli.RliError, match="ambiguous"):
        attribute(plain, obs)  # two outputs, no action space: which one?
    with pytest.raises(rli.RliError, match=r"rli\.Policy"):
        attribute(_planted(), obs)
    with pytest.raises(rli.RliError, match="unknown region"):
        attribute(policy, obs, n_steps=4).share_of("obs[9]")
    one = rli.ObsSet(obs.obs[:4], labels={"episode": np.zeros(4)})
    for kwargs, message in [(dict(inputs=[0], region="obs[0]"), "exactly one"), (dict(inputs=[0], min_share=1.5),
                            "min_share"), (dict(region="obs[0]", obs=one), "1 group")]:
        options = dict(policy=policy, obs=obs, min_share=0.5) | kwargs
        with pytest.raises(rli.RliError, match=re.escape(message)):
            assert_attribution_in(**options)


def test_failure_message_carries_the_evidence():
    policy = rli.load_policy(_planted(), env="CartPole-v1")
    with pytest.raises(AssertionError) as info:
        assert_attribution_in(policy=policy, obs=_episodes(5, 6), inputs=[0], min_share=0.999, n_steps=8)
    text = str(info.value)
    assert "share of |attribution| on obs[0]" in text and "obs[1]:" in text and "completeness residual" in text
    assert "5 groups (by episode)" in text


# ----------------------------------------------------------------------------------------------------- docs
def test_docs_examples_run(monkeypatch, tmp_path):
    text = (ROOT / "docs" / "attribution.md").read_text()
    blocks = python_blocks(text)
    assert blocks
    run_blocks(blocks, "docs/attribution.md", tmp_path, monkeypatch)


# ---------------------------------------------------------------------------------------------------- plots
def test_plots_draw_what_was_measured():
    from rli.attribution_plots import attribution_bars, attribution_overlay, extreme_frames

    policy = rli.load_policy(_planted(), env="CartPole-v1")
    result = attribute(policy, _episodes(3, 4), n_steps=4)
    bars = attribution_bars(result).axes[0]
    widths = sorted(p.get_width() for p in bars.patches)
    assert widths == pytest.approx(sorted(s.share for s in result.shares.values()))
    images = load("ppo_cnn_hwc")
    frames = _obs("ppo_cnn_hwc", 8, seed=6)
    saliency = attribute(images, frames, method="saliency")
    overlay = attribution_overlay(saliency, frames, rows=[0, 3])
    shown = overlay.axes[1].images[1].get_array()
    np.testing.assert_allclose(shown, np.abs(saliency.attributions[3]).sum(axis=-1))
    values = reference("ppo_cnn_hwc").model.policy.predict_values(
        torch.as_tensor(np.transpose(frames, (0, 3, 1, 2)), dtype=torch.float32)).detach().numpy()[:, 0]
    panel = extreme_frames(images, frames, k=2)
    titles = [ax.get_title() for ax in panel.axes]
    assert titles[0] == f"highest: value {values.max():.3g}" and titles[-2] == f"lowest: value {values.min():.3g}"
    with pytest.raises(rli.RliError, match="frames"):
        attribution_overlay(saliency, frames[:3])
