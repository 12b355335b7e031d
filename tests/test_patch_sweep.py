"""Activation-patching sweeps: identities, agreement with hand-written hooks on SB3's own forward pass,
statistics against scipy, screening exactness where the gradient approximation is exact, a null simulation
of the Holm-corrected family on correlated (episode) data and its power, the zoo, and leak-freedom."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats as st
from torch import nn

import rli
from rli.patch_sweep import activation_gradient, patch_sweep
from tests.doc_examples import python_blocks, run_blocks
from tests.test_interrupts import Tripwire, _hooks
from tests.test_zoo import CASES
from tests.zoo.build import checkpoint


def _zoo(name: str) -> rli.Policy:
    return rli.load_policy(checkpoint(name), **CASES[name].load)


def _params(policy: rli.Policy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in policy.module.parameters()]


def _same_params(policy: rli.Policy, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))


@pytest.fixture(scope="module")
def mlp() -> tuple[rli.Policy, rli.ObsSet, np.ndarray]:
    policy = _zoo("ppo_cartpole")
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=120, seed=0, episodes=6)
    corrupt = obs.obs * np.array([1.0, 1.0, -1.0, -1.0], dtype=np.float32)  # the pole leans the other way
    return policy, obs, corrupt


def _sb3_logits(policy: rli.Policy, obs: np.ndarray) -> np.ndarray:
    """The raw action-net output, through SB3's own modules (Categorical's .logits are normalised log-probs)."""
    sb3 = policy.module
    with torch.no_grad():
        features = sb3.extract_features(torch.as_tensor(obs), sb3.pi_features_extractor)
        return sb3.action_net(sb3.mlp_extractor.forward_actor(features)).numpy()


def test_clean_source_is_the_identity_exactly(mlp):
    policy, obs, _ = mlp
    for metric in ("action_agreement", "logit", "prob", "value"):
        layers = ["critic.1"] if metric == "value" else [1, 3]
        result = patch_sweep(policy, obs, obs.obs, metric=metric, layers=layers,
                             screen="attribution" if metric == "logit" else None, top=32)
        assert np.all(result.effect == 0.0) and result.total_effect == 0.0, metric
        assert not result.significant.any()
        if result.screen_score is not None:
            assert np.all(result.screen_score == 0.0)


def test_rounding_is_not_an_effect():
    """Inputs one ulp away change the activations by rounding only: exactly 0, never significant."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    policy = rli.load_policy(net, action_space=gym.spaces.Discrete(2))
    clean = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    nudged = np.nextafter(clean, np.float32(np.inf))
    result = patch_sweep(policy, clean, nudged, metric="logit", layers=[1, 3])
    assert np.all(result.effect == 0) and not result.significant.any() and result.total_effect == 0
    raw = result.p_value
    assert np.all(raw == 1.0)
    module = importlib.import_module("rli.patch_sweep")
    floor = module.ROUNDING_ULPS
    try:  # the same sweep without the noise floor: rounding differences of ~1e-7 come out "significant"
        module.ROUNDING_ULPS = 0
        noisy = patch_sweep(policy, clean, nudged, metric="logit", layers=[1, 3])
    finally:
        module.ROUNDING_ULPS = floor
    assert noisy.significant.any() and np.nanmax(np.abs(noisy.effect)) < 1e-5
    real = patch_sweep(policy, clean, clean * np.float32(1.001), metric="logit", layers=[1])
    assert real.significant.any()  # a change of 0.1% in the inputs is far above the floor and is found


def test_whole_layer_patch_reproduces_the_corrupt_output_downstream(mlp):
    policy, obs, corrupt = mlp
    result = patch_sweep(policy, obs, corrupt, metric="logit", over=("layer",), layers=[0, 1, 2, 3])
    clean_logits, corrupt_logits = _sb3_logits(policy, obs.obs), _sb3_logits(policy, corrupt)
    chosen = clean_logits.argmax(axis=1)
    rows = np.arange(len(chosen))
    diff = corrupt_logits[rows, chosen] - clean_logits[rows, chosen]
    episodes = obs.labels["episode"]
    reference = np.mean([diff[episodes == e].mean() for e in np.unique(episodes)])  # the unit is the episode
    np.testing.assert_allclose(result.effect, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.total_effect, reference, rtol=1e-5, atol=1e-6)


def test_unit_patch_matches_hooks_on_sb3s_forward(mlp):
    policy, obs, corrupt = mlp
    result = patch_sweep(policy, obs, corrupt, metric="prob", layers=[3])
    sb3 = policy.module
    tanh = sb3.mlp_extractor.policy_net[3]
    seen = {}
    handle = tanh.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o.detach().clone()))
    _sb3_logits(policy, corrupt)
    handle.remove()
    source = seen["h"]
    clean_probs = torch.softmax(torch.as_tensor(_sb3_logits(policy, obs.obs)), 1).numpy()
    chosen = clean_probs.argmax(axis=1)
    rows = np.arange(len(chosen))
    for unit in (0, 7, 15):
        def swap(m, i, o, unit=unit):
            o = o.clone()
            o[:, unit] = source[:, unit]
            return o
        handle = tanh.register_forward_hook(swap)
        try:
            patched = torch.softmax(torch.as_tensor(_sb3_logits(policy, obs.obs)), 1).numpy()
        finally:
            handle.remove()
        diff = patched[rows, chosen] - clean_probs[rows, chosen]
        episode_means = [diff[obs.labels["episode"] == e].mean() for e in np.unique(obs.labels["episode"])]
        i = result.sites.index(f"actor.3[{unit}]")
        np.testing.assert_allclose(result.effect[i], np.mean(episode_means), rtol=1e-5, atol=1e-7)
        low, high = st.t.interval(0.95, len(episode_means) - 1, loc=np.mean(episode_means),
                                  scale=st.sem(episode_means))
        np.testing.assert_allclose(result.ci[i], [low, high], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.p_value[i], st.ttest_1samp(episode_means, 0.0).pvalue, rtol=1e-4)
    from statsmodels.stats.multitest import multipletests
    np.testing.assert_allclose(result.p_adjusted, multipletests(result.p_value, method="holm")[1], rtol=1e-10)
    assert result.n_groups == 6


def test_screen_equals_exact_patching_where_the_network_is_linear_downstream():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.Linear(5, 2))
    policy = rli.load_policy(net, action_space=gym.spaces.Discrete(2))
    rng = np.random.default_rng(1)
    clean, corrupt = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    result = patch_sweep(policy, clean, corrupt, metric="logit", layers=[2], screen="attribution", top=5)
    np.testing.assert_allclose(result.screen_score, result.effect, rtol=1e-4, atol=1e-6)  # exact: linear after 2
    assert result.spearman == pytest.approx(st.spearmanr(result.screen_score, result.effect).statistic)
    assert result.spearman == pytest.approx(1.0)
    nonlinear = patch_sweep(policy, clean, corrupt, metric="prob", layers=[0], screen="attribution", top=3)
    assert len(nonlinear.patched) == 3 and np.isnan(nonlinear.effect).sum() == 3
    assert set(nonlinear.patched) == set(np.argsort(-np.abs(nonlinear.screen_score))[:3])


def test_activation_gradient_matches_autograd_on_the_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    policy = rli.load_policy(net)
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    got = activation_gradient(policy, 1, x, lambda head: head[:, 1].sum())
    assert all(p.grad is None for p in net.parameters())
    h = torch.tanh(net[0](torch.as_tensor(x))).detach().requires_grad_()
    net[2](h)[:, 1].sum().backward()
    np.testing.assert_allclose(got, h.grad.numpy(), rtol=1e-6)


def _null_data(rng: np.random.Generator, episodes: int, steps: int, shift: float) -> tuple[np.ndarray, ...]:
    """AR(1) drifting states (ρ = 0.9) within episodes; corrupt rows are other episodes' states, shifted on input 0."""
    def drift() -> np.ndarray:
        x = np.zeros((episodes, steps, 3))
        x[:, 0] = rng.normal(size=(episodes, 3))
        for t in range(1, steps):
            x[:, t] = 0.9 * x[:, t - 1] + np.sqrt(1 - 0.81) * rng.normal(size=(episodes, 3))
        return x.reshape(-1, 3)
    clean, corrupt = drift(), drift()
    corrupt[:, 0] += shift
    return clean, corrupt, np.repeat(np.arange(episodes), steps)


def _planted() -> rli.Policy:
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
        net[1].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
        net[1].bias.zero_()
    return rli.load_policy(net, action_space=gym.spaces.Discrete(2))


def _logit1(head):
    return head[:, 1]


def _family_rejections(reps: int, shift: float, seed: int) -> tuple[int, int]:
    """(reps with any site significant, reps with site 0 significant) for the Holm family over 3 units."""
    policy, rng = _planted(), np.random.default_rng(seed)
    anyone = first = 0
    for _ in range(reps):
        clean, corrupt, groups = _null_data(rng, 8, 25, shift)
        result = patch_sweep(policy, clean, corrupt, metric=_logit1, layers=[0], groups=groups)
        anyone += bool(result.significant.any())
        first += bool(result.significant[0])
    return anyone, first


def test_null_family_wise_error_and_power_fast():
    reps = 60
    bound = st.binom.ppf(0.99, reps, 0.05)
    false, _ = _family_rejections(reps, 0.0, seed=0)  # every unit's true effect is 0: corrupt ~ clean
    assert false <= bound
    _, found = _family_rejections(30, 2.0, seed=1)  # input 0 shifted by 2 sd: unit 0 carries it
    assert found >= 24


@pytest.mark.slow
def test_null_family_wise_error_and_power_thorough():
    reps = 1000
    false, _ = _family_rejections(reps, 0.0, seed=10)
    assert false <= st.binom.ppf(0.99, reps, 0.05)
    _, found = _family_rejections(200, 2.0, seed=11)
    assert found >= 0.8 * 200


def test_ungrouped_rows_would_be_anticonservative_on_episodes():
    """Why groups matter: the same null with rows taken as independent rejects far more often."""
    policy, rng = _planted(), np.random.default_rng(3)
    false = 0
    for _ in range(30):
        clean, corrupt, _ = _null_data(rng, 8, 25, 0.0)
        false += bool(patch_sweep(policy, clean, corrupt, metric=_logit1, layers=[0]).significant.any())
    assert false > st.binom.ppf(0.99, 30, 0.05)


def test_cnn_channels_and_positions():
    policy = _zoo("ppo_cnn_chw")
    obs = rli.ObsSet.from_rollouts(CASES_ENV["ppo_cnn_chw"], policy, n=12, seed=0, episodes=2)
    corrupt = obs.obs[::-1].copy()
    same = patch_sweep(policy, obs, obs.obs, metric="logit", over=("layer", "channel"), layers=[1])
    assert len(same.sites) == 32 and np.all(same.effect == 0)
    by_position = patch_sweep(policy, obs, corrupt, metric="logit", over=("layer", "position"), layers=[3])
    assert len(by_position.sites) == 9 and by_position.layer_grid(by_position.layer[0]).shape == (3, 3)
    whole = patch_sweep(policy, obs, corrupt, metric="logit", over=("layer",), layers=[1, 3])
    np.testing.assert_allclose(whole.effect, whole.total_effect, rtol=1e-5, atol=1e-6)
    figure = by_position.heatmap(layer=by_position.layer[0])
    assert figure.axes


def test_recurrent_policy_uses_the_recorded_states():
    policy = _zoo("recurrentppo_cartpole")
    obs = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=60, seed=0, episodes=3)
    corrupt = obs[np.roll(np.arange(len(obs)), len(obs) // 2)]  # other steps, with their own recorded states
    same = patch_sweep(policy, obs, obs, metric="action_agreement", layers=[0, 2])
    assert np.all(same.effect == 0)
    whole = patch_sweep(policy, obs, corrupt, metric="prob", over=("layer",), layers=[0, 2], screen="attribution")
    np.testing.assert_allclose(whole.effect, whole.total_effect, rtol=1e-5, atol=1e-6)
    with pytest.raises(rli.RliError, match="recurrent"):
        patch_sweep(policy, obs.obs, obs.obs, layers=[0])


CASES_ENV = {"ppo_cnn_chw": "tests.zoo.envs:ZooImage-v0"}


def test_bad_input_is_an_rli_error_before_any_forward_pass(mlp):
    policy, obs, corrupt = mlp
    with pytest.raises(rli.RliError, match="same number of rows"):
        patch_sweep(policy, obs, corrupt[:10])
    with pytest.raises(rli.RliError, match="metric must be"):
        patch_sweep(policy, obs, corrupt, metric="return")
    with pytest.raises(rli.RliError, match="over must be"):
        patch_sweep(policy, obs, corrupt, over=("unit", "layer"))
    with pytest.raises(rli.RliError, match="conv layers"):
        patch_sweep(policy, obs, corrupt, over=("layer", "position"))
    with pytest.raises(rli.RliError, match="screen must be"):
        patch_sweep(policy, obs, corrupt, screen="gradient")
    with pytest.raises(rli.RliError, match="metric='value' reads the critic"):
        patch_sweep(policy, obs, corrupt, metric="value", layers=[1], screen="attribution")
    box = rli.load_policy(nn.Sequential(nn.Linear(2, 1)), action_space=gym.spaces.Box(-1, 1, (1,)))
    with pytest.raises(rli.RliError, match="Discrete"):
        patch_sweep(box, np.zeros((4, 2)), np.ones((4, 2)), metric="logit")
    with pytest.raises(rli.RliError, match="continuous"):
        patch_sweep(box, np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(rli.RliError, match="one finite number per row"):
        patch_sweep(box, np.zeros((4, 2)), np.ones((4, 2)), metric=lambda head: head)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_sweep_leaves_nothing_behind(error):
    torch.manual_seed(0)
    wire = Tripwire()
    module = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), wire, nn.Linear(8, 2))
    module.train()
    policy = rli.load_policy(module, action_space=gym.spaces.Discrete(2))
    before, hooks = _params(policy), _hooks(module)
    x = np.random.default_rng(0).normal(size=(20, 3))
    for calls in (1, 4, 6):  # during the clean captures, the sweep, the screen's backward pass
        wire.arm(error(), calls)
        with pytest.raises(error):
            patch_sweep(policy, x, -x, metric="logit", layers=[1], screen="attribution", top=4)
        assert _hooks(module) == hooks and _same_params(policy, before)
        assert module.training and torch.is_grad_enabled()
        assert all(p.grad is None for p in module.parameters())
    result = patch_sweep(policy, x, -x, metric="logit", layers=[1])
    assert _hooks(module) == hooks and _same_params(policy, before) and np.isfinite(result.effect).all()


@pytest.mark.slow
def test_causal_guide_examples_run(tmp_path, monkeypatch):
    """docs/causal.md's code blocks run as written, in order, in one namespace (their asserts included)."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    text = (root / "docs" / "causal.md").read_text()
    text = text[:text.index("## Worked example: the formation policy")]  # run by tests/test_patch_return.py
    blocks = python_blocks(text)
    assert len(blocks) == 5
    run_blocks(blocks, "docs/causal.md", tmp_path, monkeypatch)
