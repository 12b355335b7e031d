"""Networks that are not a plain Sequential: residual blocks, custom forwards, TorchScript, SB3 CnnPolicy.

References are independent of rli: forward hooks registered by the test itself on the
original modules, activations computed by hand, SB3's own ``predict``.
"""

from __future__ import annotations

import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|trace|trace_method)` is deprecated:DeprecationWarning")


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.fc(x))


class ResidualPolicy(nn.Module):
    """``inp -> tanh -> block (x + relu(fc(x))) -> head``: the head reads the block's sum."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.block = Block(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.tanh(self.inp(x))))


RESIDUAL_TRUNK = ["inp", "block.fc", "block.act", "block", "head"]


def _residual() -> ResidualPolicy:
    torch.manual_seed(0)
    return ResidualPolicy().eval()


def _obs(n: int = 64, dim: int = 5) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)


def _hooked(module: nn.Module, run) -> torch.Tensor:
    """The output of ``module`` during ``run()``, read by a hook the test registers itself."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen[0]


def _by_hand(net: ResidualPolicy, obs: np.ndarray) -> np.ndarray:
    """The residual sum computed from the weights, without running any module."""
    x = torch.as_tensor(obs)
    with torch.no_grad():
        h = torch.tanh(x @ net.inp.weight.T + net.inp.bias)
        return (h + torch.relu(h @ net.block.fc.weight.T + net.block.fc.bias)).numpy()


# --------------------------------------------------------------------- residual modules, every format
def test_residual_sum_is_a_layer_and_the_default():
    net = _residual()
    policy = rli.load_policy(net)
    assert [layer.name for layer in policy.actor_layers] == RESIDUAL_TRUNK
    assert policy.layer("block").type == "Block" and policy.layer("block").index == 3
    assert "block" in str(policy.layers)
    assert policy.default_layer.name == "block", "the head reads the residual sum, not the ReLU inside it"
    obs = _obs()
    captured = rli.capture(policy, obs, layers=[policy.default_layer])["block"]
    np.testing.assert_allclose(captured, _by_hand(net, obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(captured, _hooked(net.block, lambda: net(torch.as_tensor(obs))).numpy(), atol=0)
    relu = rli.capture(policy, obs, layers=["block.act"])["block.act"]
    assert np.abs(relu - captured).max() > 0.1, "the branch's ReLU is another representation than the sum"


def _save(net: ResidualPolicy, form: str, path) -> tuple:
    """Save ``net`` as ``form``; returns the load_policy arguments."""
    if form == "state_dict":
        torch.save(net.state_dict(), path / "net.pt")
        return path / "net.pt", {"arch": ResidualPolicy}
    if form == "safetensors":
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(path / "net.safetensors"))
        return path / "net.safetensors", {"arch": ResidualPolicy}
    if form == "scripted":
        torch.jit.script(net).save(str(path / "net.ts.pt"))
    else:
        torch.jit.trace(net, torch.zeros(2, 5)).save(str(path / "net.ts.pt"))
    return path / "net.ts.pt", {"obs_shape": (5,)}


@pytest.mark.parametrize("form", ["state_dict", "safetensors", "scripted", "traced"])
def test_residual_module_in_every_format(form, tmp_path):
    net = _residual()
    src, kwargs = _save(net, form, tmp_path)
    policy = rli.load_policy(src, **kwargs)
    assert [layer.name for layer in policy.actor_layers] == RESIDUAL_TRUNK
    assert [layer.width for layer in policy.actor_layers] == [8, 8, 8, 8, 3]
    assert policy.default_layer.name == "block"
    obs = _obs()
    with torch.no_grad():
        expected = net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-5, atol=1e-6)
    acts = rli.capture(policy, obs, layers=["block", "block.act", 0])
    np.testing.assert_allclose(acts["block"], _by_hand(net, obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["block.act"], _hooked(net.block.act, lambda: net(torch.as_tensor(obs))).numpy(),
                               rtol=1e-5, atol=1e-6)
    with rli.ablate(policy, "block", np.eye(8)[:, :1]):
        ablated = rli.capture(policy, obs, layers=["block"])["block"]
    np.testing.assert_allclose(ablated[:, 0], 0, atol=1e-6)
    np.testing.assert_allclose(ablated[:, 1:], acts["block"][:, 1:], rtol=1e-5, atol=1e-6)


def test_torchscript_conv_network_with_functional_calls_and_branches(tmp_path):
    class ConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.block = Block(4 * 8 * 8)
            self.head = nn.Linear(4 * 8 * 8, 2)
            self.scale = 0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.flatten(nn.functional.relu(self.conv(x)), 1)
            if self.training:
                h = h * 2.0
            return self.head(self.block(h) * self.scale)

    torch.manual_seed(0)
    net = ConvNet().eval()
    obs = np.random.default_rng(2).normal(size=(6, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.as_tensor(obs)).numpy()
    reference = _hooked(net.conv, lambda: net(torch.as_tensor(obs))).flatten(1).numpy()
    for make in (lambda: torch.jit.script(net), lambda: torch.jit.trace(net, torch.zeros(2, 3, 16, 16))):
        make().save(str(tmp_path / "conv.pt"))
        policy = rli.load_policy(tmp_path / "conv.pt", obs_shape=(3, 16, 16))
        assert [layer.name for layer in policy.actor_layers] == ["conv", "block.fc", "block.act", "block", "head"]
        assert policy.layer("conv").shape == (4, 8, 8) and policy.default_layer.name == "block"
        np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rli.capture(policy, obs, layers=["conv"])["conv"], reference, rtol=1e-5, atol=1e-6)


def test_torchscript_rebuilt_from_the_users_class_and_checked(tmp_path):
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block(5)
            self.head = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(2):
                x = self.block(x)
            return self.head(x)

    class Wrong(Looped):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.block(x))

    torch.manual_seed(0)
    net = Looped().eval()
    torch.jit.script(net).save(str(tmp_path / "looped.pt"))
    with pytest.raises(rli.RliError, match=r"prim::Loop.*arch="):
        rli.load_policy(tmp_path / "looped.pt")
    policy = rli.load_policy(tmp_path / "looped.pt", arch=Looped)
    obs = _obs()
    with torch.no_grad():
        np.testing.assert_allclose(policy.act(obs), net(torch.as_tensor(obs)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(rli.RliError, match="computes other outputs"):
        rli.load_policy(tmp_path / "looped.pt", arch=Wrong)


# ------------------------------------------------------------------------------------- default layer
def test_default_layer_of_plain_sequentials_keeps_its_index():
    mlp = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)))
    assert mlp.default_layer.index == 3
    nested = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ELU()), nn.Sequential(nn.Linear(8, 8), nn.ELU()),
                           nn.Linear(8, 2))
    policy = rli.load_policy(nested)
    assert [layer.name for layer in policy.actor_layers] == ["0.0", "0.1", "1.0", "1.1", "2"]
    assert policy.default_layer.name == "1.1"
    inplace = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)))
    assert inplace.default_layer.index == 1, "an in-place ReLU shares its input tensor; the ReLU is what the head reads"


def test_an_output_activation_belongs_to_the_head():
    squashed = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Tanh()))
    assert squashed.default_layer.index == 1, "the last hidden layer, not the pre-tanh action"
    dropout = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2)))
    assert dropout.default_layer.index == 1, "dropout passes its input through when acting"


def test_sb3_mlp_defaults(sb3_zip):
    ppo = rli.load_policy(sb3_zip("PPO")[1])
    assert ppo.default_layer.name == "mlp_extractor.policy_net.5" and ppo.default_layer.index == 5
    td3 = rli.load_policy(sb3_zip("TD3")[1])
    assert [layer.type for layer in td3.actor_layers] == ["Linear", "ReLU"] * 2 + ["Linear", "Tanh"]
    assert td3.default_layer.name == "actor.mu.3", "TD3's mu ends in Linear + Tanh: the head reads the last ReLU"
    dqn = rli.load_policy(sb3_zip("DQN")[1])
    assert dqn.default_layer.name == "q_net.q_net.3"


def test_protocol_uses_the_policy_default():
    from rli import protocol

    policy = rli.load_policy(_residual())
    assert protocol.choose_layer(protocol.resolve_setup(policy, False, {})) == policy.default_layer == policy.layer("block")


# ------------------------------------------------------------------------------------- SB3 CnnPolicy
class TinyImages(gym.Env):
    """Random uint8 frames; reward for action 1 when the red channel is bright (so training has a signal)."""

    def __init__(self, shape=(3, 36, 36)) -> None:
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._channel_last = shape[-1] == 3
        self._frame = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._frame = self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)
        return self._frame, {}

    def step(self, action):
        red = self._frame[..., 0] if self._channel_last else self._frame[0]
        reward = float((red.mean() > 127.5) == (action == 1))
        return self.reset()[0], reward, False, False, {}


def _check_cnn_policy(shape, steps: int, tmp_path) -> None:
    from stable_baselines3 import PPO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PPO("CnnPolicy", TinyImages(shape), seed=0, device="cpu", n_steps=64, batch_size=32, n_epochs=1)
        if steps:
            model.learn(steps)
    model.save(tmp_path / "cnn.zip")
    policy = rli.load_policy(tmp_path / "cnn.zip")
    names = [layer.name for layer in policy.actor_layers]
    assert names == [f"features_extractor.cnn.{i}" for i in range(7)] + [
        "features_extractor.linear.0", "features_extractor.linear.1", "action_net"]
    assert policy.default_layer.name == "features_extractor.linear.1" and policy.default_layer.width == 512
    frames = np.random.default_rng(3).integers(0, 256, size=(8, *shape), dtype=np.uint8)
    chw = frames if shape[0] == 3 else frames.transpose(0, 3, 1, 2)  # SB3 transposes channels-last frames
    np.testing.assert_array_equal(policy.act(chw), model.predict(frames, deterministic=True)[0])
    features = _hooked(model.policy.features_extractor, lambda: model.predict(frames, deterministic=True)).numpy()
    np.testing.assert_allclose(rli.capture(policy, chw, layers=[policy.default_layer])[policy.default_layer.name],
                               features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 36, 36), (36, 36, 3)], ids=["channels_first", "channels_last"])
def test_cnn_policy_default_is_the_features_not_the_empty_policy_net(shape, tmp_path):
    _check_cnn_policy(shape, 0, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(3, 36, 36), (36, 36, 3)], ids=["channels_first", "channels_last"])
def test_trained_cnn_policy_default_and_capture(shape, tmp_path):
    _check_cnn_policy(shape, 256, tmp_path)


def test_custom_features_extractor_with_a_residual_block(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class SmallCnn(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box) -> None:
            super().__init__(observation_space, features_dim=32)
            self.conv = nn.Conv2d(3, 4, 4, stride=4)
            self.proj = nn.Linear(64, 32)
            self.block = Block(32)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.block(torch.relu(self.proj(torch.flatten(self.conv(obs), 1))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PPO("CnnPolicy", TinyImages((3, 16, 16)), seed=0, device="cpu", n_steps=32, batch_size=32,
                    policy_kwargs={"features_extractor_class": SmallCnn, "net_arch": []})
    policy = rli.load_policy(model)
    assert [layer.name for layer in policy.actor_layers] == [
        "features_extractor.conv", "features_extractor.proj", "features_extractor.block.fc",
        "features_extractor.block.act", "features_extractor.block", "action_net"]
    assert policy.default_layer.name == "features_extractor.block"
    frames = np.random.default_rng(4).integers(0, 256, size=(5, 3, 16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(policy.act(frames), model.predict(frames, deterministic=True)[0])
    block = _hooked(model.policy.features_extractor.block, lambda: model.predict(frames, deterministic=True)).numpy()
    np.testing.assert_allclose(rli.capture(policy, frames, layers=[policy.default_layer])["features_extractor.block"],
                               block, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- CLI --arch
def test_cli_arch_names_a_custom_class_and_needs_trust(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_nets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.fc = nn.Linear(width, width)
                self.act = nn.ReLU()

            def forward(self, x):
                return x + self.act(self.fc(x))

        class ResidualPolicy(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp = nn.Linear(5, 8)
                self.block = Block(8)
                self.head = nn.Linear(8, 3)

            def forward(self, x):
                return self.head(self.block(torch.tanh(self.inp(x))))
    '''))
    torch.save(_residual().state_dict(), tmp_path / "weights.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "user_nets", raising=False)
    assert main(["layers", "weights.pt", "--arch", "user_nets:ResidualPolicy"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust" in err and "user_nets" in err
    assert main(["layers", "weights.pt", "--arch", "user_nets:ResidualPolicy", "--trust"]) == 0
    out = capsys.readouterr().out
    assert "3      actor.3  block      Block   8" in out
    assert main(["layers", "weights.pt", "--arch", "user_nets:Missing", "--trust"]) == 1
    assert "has no 'Missing'" in capsys.readouterr().err
    assert main(["layers", "weights.pt", "--arch", "no_such_module_here:Net", "--trust"]) == 1
    assert "cannot import 'no_such_module_here'" in capsys.readouterr().err
    assert main(["layers", "weights.pt", "--arch", "mlp:5,8,3"]) == 1, "an MLP arch does not fit residual weights"
    assert "do not fit" in capsys.readouterr().err


def test_arch_strings_and_classes_needing_arguments_are_explained(tmp_path):
    torch.save(_residual().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(rli.RliError, match="is a name, not an architecture"):
        rli.load_policy(tmp_path / "weights.pt", arch="user_nets:ResidualPolicy")
    with pytest.raises(rli.RliError, match=r"Block cannot be built without arguments.*lambda: Block\(\.\.\.\)"):
        rli.load_policy(tmp_path / "weights.pt", arch=Block)
