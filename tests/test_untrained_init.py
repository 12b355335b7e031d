"""The untrained-network control is built with the policy's own initialiser (rli.untrained).

References independent of rli: SB3's own construction of the same algorithm with the same seed and
kwargs (``PPO(..., seed=s).policy``), the orthogonality and gains SB3's ``init_weights`` documents,
and torch's own ``reset_parameters`` run by hand.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces
from scipy.stats import binom
from sklearn.model_selection import GroupKFold
from torch import nn

import rli
from rli.untrained import UntrainedInitWarning, untrained_copy
from tests.zoo.build import ZOO, algorithm_class, checkpoint

SB3_DEFAULT = ("ppo_cartpole", "sac_pendulum", "dqn_cartpole", "recurrentppo_cartpole", "ppo_cnn_chw")
SB3_SLOW = ("a2c_pendulum_vecnorm", "td3_pendulum", "ppo_goal_dict", "ppo_cnn_hwc", "qrdqn_cartpole", "tqc_pendulum",
            "trpo_cartpole")


def _sb3_reference(name: str, seed: int) -> dict[str, torch.Tensor]:
    """The policy SB3 itself builds for this zoo entry with ``seed`` (one torch thread, as rli builds it: the
    orthogonal init's QR rounds differently on two threads, 3e-7 on the NatureCNN)."""
    from stable_baselines3.common.env_util import make_vec_env

    entry = ZOO[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            venv = make_vec_env(entry.env_id, n_envs=1, seed=0)
            model = algorithm_class(entry)(entry.policy, venv, policy_kwargs=entry.policy_kwargs, seed=seed,
                                           device="cpu", **entry.algo_kwargs)
    finally:
        torch.set_num_threads(threads)
    return model.policy.state_dict()


def _check_bit_identical(name: str) -> None:
    policy = rli.load_policy(checkpoint(name))  # read from the zip without unpickling: rebuilt from the saved kwargs
    fingerprint = policy.fingerprint
    copy = untrained_copy(policy, 11)
    expected, got = _sb3_reference(name, 11), copy.module.state_dict()
    assert set(expected) == set(got)
    different = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not different, f"{name}: {different}"
    assert policy.fingerprint == fingerprint != copy.fingerprint
    assert type(policy.module).__name__ in copy.untrained_init and "rebuilt as SB3 builds it" in copy.untrained_init


@pytest.mark.parametrize("name", SB3_DEFAULT)
def test_sb3_copy_is_bit_identical_to_sb3s_own_construction(name):
    _check_bit_identical(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SB3_SLOW)
def test_sb3_copy_is_bit_identical_to_sb3s_own_construction_whole_zoo(name):
    _check_bit_identical(name)


def _orthogonal_gain(weight: torch.Tensor) -> float:
    """The gain g if ``weight`` (flattened to rows) is g times a matrix with orthonormal rows or columns, else NaN."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    gain2 = float(gram.diagonal().mean())
    return float(np.sqrt(gain2)) if torch.allclose(gram, gain2 * torch.eye(len(gram), dtype=torch.float64),
                                                      atol=1e-5 * max(gain2, 1e-4)) else float("nan")


def test_actor_critic_copy_has_sb3s_orthogonal_gains_and_zero_biases():
    """SB3's init_weights, read from its source: orthogonal, gain √2 (extractor, MLP), 0.01 action_net, 1 value_net."""
    policy = rli.load_policy(checkpoint("ppo_cnn_chw"))
    module = untrained_copy(policy, 3).module
    expected = {"features_extractor": np.sqrt(2), "mlp_extractor": np.sqrt(2), "action_net": 0.01, "value_net": 1.0}
    seen = 0
    for name, sub in module.named_modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            gain = expected[name.split(".")[0]]
            assert _orthogonal_gain(sub.weight) == pytest.approx(gain, rel=1e-5), name
            assert torch.count_nonzero(sub.bias) == 0, name
            seen += 1
    assert seen >= 6  # NatureCNN's 3 convs + its linear + the MLP layer + action_net + value_net
    trained = policy.module.mlp_extractor.policy_net[0]
    assert np.isnan(_orthogonal_gain(trained.weight)) and torch.count_nonzero(trained.bias) > 0


def test_recurrent_copy_keeps_pytorch_defaults_for_the_lstm():
    """sb3-contrib builds its LSTMs after the orthogonal init: uniform(±1/√hidden) weights, nonzero biases."""
    module = untrained_copy(rli.load_policy(checkpoint("recurrentppo_cartpole")), 4).module
    bound = 1 / np.sqrt(module.lstm_actor.hidden_size)
    for name, param in module.lstm_actor.named_parameters():
        assert bound >= float(param.detach().abs().max()) > 0.8 * bound, name
    assert _orthogonal_gain(module.action_net.weight) == pytest.approx(0.01, rel=1e-5)


def test_ortho_init_false_and_off_policy_algorithms_get_pytorch_defaults():
    from stable_baselines3 import PPO, SAC

    for cls, env, kwargs in ((PPO, "CartPole-v1", {"net_arch": [16], "ortho_init": False}),
                             (SAC, "Pendulum-v1", {"net_arch": [16]})):
        copy = untrained_copy(rli.load_policy(cls("MlpPolicy", env, policy_kwargs=kwargs, seed=0, device="cpu")), 2)
        linears = [m for m in copy.module.modules() if isinstance(m, nn.Linear) and min(m.weight.shape) > 1]
        assert all(np.isnan(_orthogonal_gain(m.weight)) and torch.count_nonzero(m.bias) > 0 for m in linears)
        assert "PyTorch defaults" in copy.untrained_init
        expected = cls("MlpPolicy", env, policy_kwargs=kwargs, seed=2, device="cpu").policy.state_dict()
        assert all(torch.equal(v, copy.module.state_dict()[k]) for k, v in expected.items())


def test_plain_torch_copy_is_reset_parameters_and_restores_every_rng():
    net = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))
    policy = rli.load_policy(net)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    copy = untrained_copy(policy, 5)
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    reference = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))
    torch.manual_seed(5)
    for module in reference.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), copy.module.state_dict().values()))
    assert copy.untrained_init == "PyTorch defaults (reset_parameters on 3 modules)"
    assert "reset_parameters" in copy.source


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(torch.full((4,), 3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x)) * self.scale


def test_parameters_without_reset_parameters_are_named_and_warned_about():
    policy = rli.load_policy(_Scaled(), obs_shape=(3,))
    with pytest.warns(UntrainedInitWarning, match="keeps 1 trained parameters"):
        copy = untrained_copy(policy, 0)
    assert "1 parameters kept trained" in copy.untrained_init and "scale" in copy.untrained_init
    assert torch.equal(copy.module.scale, policy.module.scale)
    assert not torch.equal(copy.module.fc.weight, policy.module.fc.weight)


def test_a_network_with_nothing_to_reset_is_refused():
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    with pytest.raises(rli.RliError, match="none of its modules has reset_parameters") as info:
        untrained_copy(rli.load_policy(Bare(), obs_shape=(3,)), 0)
    assert "\n" not in str(info.value) and "untrained_init=" in str(info.value)


def test_user_init_is_called_with_the_seed_and_named():
    seen = []

    def xavier(module: nn.Module, seed: int) -> None:
        seen.append(seed)
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                nn.init.xavier_normal_(sub.weight)

    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    copy = untrained_copy(policy, 9, xavier)
    assert seen == [9] and copy.untrained_init.startswith("user init ") and "xavier" in copy.untrained_init
    with pytest.raises(rli.RliError, match="changed no parameter"):
        untrained_copy(policy, 9, lambda module, seed: None)


@pytest.mark.parametrize("bad", ["xavier", 3, ("own",)])
def test_bad_init_is_refused_in_one_line(bad):
    with pytest.raises(rli.RliError, match="untrained_init must be") as info:
        untrained_copy(rli.load_policy(nn.Sequential(nn.Linear(3, 4))), 0, bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0"])
def test_bad_seed_is_refused(bad):
    with pytest.raises(rli.RliError, match="seed must be an integer"):
        untrained_copy(rli.load_policy(nn.Sequential(nn.Linear(3, 4))), bad)


def test_reset_parameters_on_request_and_fallback_when_sb3_cannot_rebuild():
    from stable_baselines3 import PPO

    policy = rli.load_policy(PPO("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, seed=0, device="cpu"))
    with pytest.warns(UntrainedInitWarning, match="log_std"):  # SB3's log_std has no reset_parameters
        forced = untrained_copy(policy, 1, "reset_parameters")
    assert forced.untrained_init.startswith("PyTorch defaults (reset_parameters")
    assert np.isnan(_orthogonal_gain(forced.module.mlp_extractor.policy_net[0].weight))

    def broken() -> dict:
        raise TypeError("custom extractor needs an argument")

    policy.module._get_constructor_parameters = broken
    with pytest.warns(UntrainedInitWarning, match="SB3 could not rebuild"):
        fallback = untrained_copy(policy, 1)
    assert fallback.untrained_init.startswith("not SB3's own init (rebuild failed: TypeError")


# ------------------------------------------------------------------------------ null simulation
D, WIDTH = 6, 64


def _rollouts(rng: np.random.Generator, episodes: int = 8, steps: int = 50, rho: float = 0.95):
    """Episodes of a slowly drifting AR(1) latent (2-D), observations a smooth function of it, target sin(2·z₁)."""
    z = np.zeros((episodes, steps, 2))
    z[:, 0] = rng.normal(size=(episodes, 2))
    for t in range(1, steps):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(episodes, 2))
    mix, shift = rng.normal(size=(2, D)), rng.normal(size=D)
    obs = np.tanh(z @ mix + shift) + 0.05 * rng.normal(size=(episodes, steps, D))
    return obs.reshape(-1, D).astype(np.float32), np.sin(2 * z[..., 0]).reshape(-1), np.repeat(np.arange(episodes), steps)


def _grouped_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha: float = 1.0) -> float:
    """Held-out ridge R² with whole episodes held out (scikit-learn's GroupKFold), standardised on training folds."""
    pred = np.empty_like(y)
    for train, test in GroupKFold(4).split(x, y, groups):
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        xt, xs = (x[train] - mu) / sd, (x[test] - mu) / sd
        w = np.linalg.solve(xt.T @ xt + alpha * np.eye(x.shape[1]), xt.T @ (y[train] - y[train].mean()))
        pred[test] = xs @ w + y[train].mean()
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def _layer_r2(module: nn.Module, obs: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    with torch.no_grad():
        hidden = module.mlp_extractor.policy_net(torch.as_tensor(obs)).double().numpy()
    return _grouped_r2(hidden, y, groups)


def _train_towards(module: nn.Module, obs: np.ndarray, y: np.ndarray, steps: int = 150) -> None:
    """The planted signal: the actor trunk trained (Adam, a linear head) to carry the target."""
    head = nn.Linear(WIDTH, 1)
    opt = torch.optim.Adam([*module.mlp_extractor.policy_net.parameters(), *head.parameters()], lr=1e-2)
    x, t = torch.as_tensor(obs), torch.as_tensor(y, dtype=torch.float32)[:, None]
    for _ in range(steps):
        opt.zero_grad()
        loss = ((head(module.mlp_extractor.policy_net(x)) - t) ** 2).mean()
        loss.backward()
        opt.step()


def _rank_p_values(reps: int, init, planted: bool, controls: int = 19) -> np.ndarray:
    """Per data set: p = (1 + #{untrained copies with R² ≥ the policy's}) / (controls + 1).

    Under the null (the "trained" policy is a never-trained SB3 policy, another draw of SB3's init) the policy's
    R² is exchangeable with its copies' only if the copies come from SB3's own init; then P(p ≤ 0.05) = 1/20.
    """
    obs_space = spaces.Box(-np.inf, np.inf, (D,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    p_values = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: a second thread only contends (QR 0.3 s vs 0.3 ms on a busy machine)
    try:
        for rep in range(reps):
            p_values.append(_one_rank_p_value(rep, init, planted, controls, obs_space, act_space))
    finally:
        torch.set_num_threads(threads)
    return np.array(p_values)


def _one_rank_p_value(rep: int, init, planted: bool, controls: int, obs_space, act_space) -> float:
    from stable_baselines3.common.policies import ActorCriticPolicy

    obs, y, groups = _rollouts(np.random.default_rng(rep))
    torch.manual_seed(10_000 + rep)
    module = ActorCriticPolicy(obs_space, act_space, lambda _: 0.0)
    if planted:
        _train_towards(module, obs, y)
    policy = rli.load_policy(module)
    r2 = _layer_r2(module, obs, y, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedInitWarning)  # log_std has no reset_parameters (init="reset...")
        copies = [_layer_r2(untrained_copy(policy, 100 * rep + k, init).module, obs, y, groups)
                  for k in range(controls)]
    return (1 + sum(c >= r2 for c in copies)) / (controls + 1)


def test_null_simulation_fast():
    """The default-run version: 3 null data sets (bound: 1 false positive) and one planted signal (found)."""
    assert int((_rank_p_values(3, None, planted=False) <= 0.05).sum()) <= int(binom.ppf(0.99, 3, 0.05))
    assert _rank_p_values(1, None, planted=True)[0] <= 0.05


@pytest.mark.slow
def test_null_simulation_untrained_control_is_calibrated_on_correlated_rollouts():
    """False-positive rate of "beats its untrained control" for a never-trained policy ≤ 5% (binomial 99% bound)."""
    reps = 60
    p_values = _rank_p_values(reps, None, planted=False)
    bound = int(binom.ppf(0.99, reps, 0.05))
    assert int((p_values <= 0.05).sum()) <= bound, (np.sort(p_values), bound)


@pytest.mark.slow
def test_null_simulation_fails_for_pytorch_default_controls():
    """The defect this module fixes, seen by the same simulation: PyTorch-default controls (rli before issue #17)
    give 12 false positives in 60 null data sets (20%), above the bound of 7."""
    reps = 60
    p_values = _rank_p_values(reps, "reset_parameters", planted=False)
    assert int((p_values <= 0.05).sum()) > int(binom.ppf(0.99, reps, 0.05)), np.sort(p_values)


@pytest.mark.slow
def test_power_simulation_a_trained_in_signal_beats_its_untrained_control():
    p_values = _rank_p_values(8, None, planted=True)
    assert int((p_values <= 0.05).sum()) >= 7, p_values


@pytest.mark.slow
def test_formation_untrained_control_with_sb3_init_is_stronger_than_pytorch_defaults():
    """The shipped formation policy (PPO, orthogonal init): every SB3-initialised control seed decodes the upwash
    better than every PyTorch-default one (measured 0.706–0.751 vs 0.585–0.589, control_seeds=3, seed=0)."""
    from rli.envs import probe_grid

    policy = rli.load_policy("examples/checkpoints/formation_ppo_seed42.zip")
    grid = probe_grid(nominal="reference")
    acts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedInitWarning)
        for init in (None, "reset_parameters"):
            acts[init] = [rli.capture(untrained_copy(policy, s, init), grid, [5])[5] for s in range(3)]
    y = np.asarray(grid.labels["upwash"], dtype=np.float64)
    groups = np.arange(len(y)) % 5  # the grid's rows are exchangeable here; what differs is only the init
    own = [_grouped_r2(a.astype(np.float64), y, groups, alpha=1e-2) for a in acts[None]]
    default = [_grouped_r2(a.astype(np.float64), y, groups, alpha=1e-2) for a in acts["reset_parameters"]]
    assert min(own) > max(default), (own, default)
