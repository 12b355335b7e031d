"""rli.load_policy: every format, actions equal to SB3's predict, and nothing untrusted is executed."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import rli
from tests.conftest import SB3_CASES, ImageEnv


def _random_obs(policy: rli.Policy, n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *policy.obs_shape)).astype(np.float32)


@pytest.mark.parametrize("algo", list(SB3_CASES))
def test_sb3_zip_actions_equal_predict(sb3_zip, algo):
    model, path = sb3_zip(algo)
    policy = rli.load_policy(path)
    assert policy.kind == algo
    obs = _random_obs(policy)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), expected)


@pytest.mark.parametrize("algo", ["PPO", "SAC", "DQN"])
def test_live_model_and_policy_load_like_the_file(sb3_zip, algo):
    model, path = sb3_zip(algo)
    from_file, live, live_policy = rli.load_policy(path), rli.load_policy(model), rli.load_policy(model.policy)
    assert from_file.fingerprint == live.fingerprint == live_policy.fingerprint
    obs = _random_obs(live)
    np.testing.assert_array_equal(from_file.act(obs), live.act(obs))


def test_trusted_load_matches_safe_load(sb3_zip):
    _, path = sb3_zip("PPO")
    assert rli.load_policy(path, trust=True).fingerprint == rli.load_policy(path).fingerprint


def test_ppo_layer_5_is_the_third_hidden_activation(sb3_zip):
    policy = rli.load_policy(sb3_zip("PPO")[1])
    layer = policy.layer(5)
    assert (layer.name, layer.type, layer.width) == ("mlp_extractor.policy_net.5", "Tanh", 16)
    assert [layer.type for layer in policy.actor_layers] == ["Linear", "Tanh"] * 3 + ["Linear"]
    assert policy.layer("critic.6").name == "value_net"


def test_cnn_policy_layers_and_actions(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("CnnPolicy", ImageEnv(), seed=0, device="cpu", n_steps=16, batch_size=16)
    model.save(tmp_path / "cnn.zip")
    policy = rli.load_policy(tmp_path / "cnn.zip")
    assert policy.layer(0).name == "features_extractor.cnn.0"
    assert policy.layer(0).shape == (32, 8, 8)
    obs = np.random.default_rng(0).integers(0, 256, size=(6, 1, 36, 36), dtype=np.uint8)
    np.testing.assert_array_equal(policy.act(obs), model.predict(obs, deterministic=True)[0])
    pooled = rli.capture(policy, obs, layers=[1], pool="channel")[1]
    flat = rli.capture(policy, obs, layers=[1])[1]
    assert pooled.shape == (6, 32) and flat.shape == (6, 32 * 8 * 8)
    np.testing.assert_allclose(pooled, flat.reshape(6, 32, 64).mean(axis=2), rtol=1e-5, atol=1e-6)


def test_vecnormalize_beside_the_zip_is_applied(tmp_path, sb3_zip):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model, path = sb3_zip("PPO")
    venv = VecNormalize(DummyVecEnv([lambda: __import__("gymnasium").make("Pendulum-v1")]), clip_obs=3.0)
    venv.obs_rms.mean = np.array([0.5, -0.2, 1.0])
    venv.obs_rms.var = np.array([0.25, 4.0, 9.0])
    target = tmp_path / "ppo.zip"
    target.write_bytes(path.read_bytes())
    venv.save(tmp_path / "vecnormalize.pkl")
    policy = rli.load_policy(target)
    assert policy.normalizer is not None and "VecNormalize" in policy.normalizer.source
    obs = _random_obs(policy) * 5
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), expected)
    assert rli.load_policy(target, normalizer=False).normalizer is None
    live = rli.load_policy(model, env=venv)
    np.testing.assert_array_equal(live.act(obs), expected)


class _Boom:
    """Unpickling this would run ``os.system`` — the canary for every safe path."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_untrusted_torch_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "x": _Boom(marker)}, tmp_path / "evil.pt")
    with pytest.raises(rli.RliError, match="trust=True"):
        rli.load_policy(tmp_path / "evil.pt")
    assert not marker.exists()


def test_untrusted_sb3_zip_is_not_executed(tmp_path, sb3_zip):
    _, path = sb3_zip("PPO")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            content = src.read(item)
            if item == "data":
                data = json.loads(content)
                data["observation_space"][":serialized:"] = base64.b64encode(pickle.dumps(_Boom(marker))).decode()
                content = json.dumps(data).encode()
            dst.writestr(item, content)
    with pytest.raises(rli.RliError, match=r"posix\.system.*trust=True"):
        rli.load_policy(evil)
    assert not marker.exists()


def test_untrusted_vecnormalize_is_not_executed(tmp_path, sb3_zip):
    _, path = sb3_zip("PPO")
    marker = tmp_path / "pwned"
    (tmp_path / "ppo.zip").write_bytes(path.read_bytes())
    (tmp_path / "vecnormalize.pkl").write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(rli.RliError, match=r"posix\.system"):
        rli.load_policy(tmp_path / "ppo.zip")
    assert not marker.exists()


def test_custom_extractor_needs_trust(tmp_path):
    from stable_baselines3 import PPO

    from tests.custom_extractor import TinyExtractor

    model = PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu",
                policy_kwargs={"features_extractor_class": TinyExtractor})
    model.save(tmp_path / "custom.zip")
    with pytest.raises(rli.RliError, match=r"tests\.custom_extractor\.TinyExtractor.*trust=True"):
        rli.load_policy(tmp_path / "custom.zip")
    policy = rli.load_policy(tmp_path / "custom.zip", trust=True)
    assert policy.layer(0).name == "features_extractor.net"
    obs = _random_obs(policy)
    np.testing.assert_array_equal(policy.act(obs), model.predict(obs, deterministic=True)[0])


def _reference_actor() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(28, 32), nn.ELU(), nn.Linear(32, 32), nn.ELU(), nn.Linear(32, 16), nn.ELU(),
                         nn.Linear(16, 4))


def test_whole_pickled_sequential_loads_without_trust(tmp_path):
    actor = _reference_actor()
    torch.save(actor, tmp_path / "actor.pt")
    policy = rli.load_policy(tmp_path / "actor.pt")
    obs = _random_obs(policy)
    np.testing.assert_allclose(policy.act(obs), actor(torch.as_tensor(obs)).detach().numpy(), rtol=0, atol=0)
    assert policy.layer(5).type == "ELU"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_is_opened_layer_by_layer(tmp_path):
    actor = _reference_actor()
    torch.jit.script(actor).save(str(tmp_path / "actor.ts.pt"))
    policy = rli.load_policy(tmp_path / "actor.ts.pt")
    assert policy.kind == "TorchScript"
    obs = _random_obs(policy)
    np.testing.assert_allclose(policy.act(obs), actor(torch.as_tensor(obs)).detach().numpy(), atol=1e-6)
    manual = actor[:6](torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_allclose(rli.capture(policy, obs, layers=[5])[5], manual, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_with_a_loop_is_refused_clearly(tmp_path):
    class Custom(nn.Module):  # custom forwards load (tests/test_architectures.py); loops cannot be run op by op
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            for _ in range(2):
                x = self.fc(x)
            return x

    torch.jit.script(Custom()).save(str(tmp_path / "custom.pt"))
    with pytest.raises(rli.RliError, match=r"prim::Loop.*state_dict.*arch="):
        rli.load_policy(tmp_path / "custom.pt")


def test_state_dict_with_arch_spec_and_stored_normaliser(tmp_path):
    actor = _reference_actor()
    state = dict(actor.state_dict())
    state["obs_rms.mean"] = torch.linspace(-1, 1, 28, dtype=torch.float64)
    state["obs_rms.var"] = torch.full((28,), 4.0, dtype=torch.float64)
    torch.save(state, tmp_path / "weights.pt")
    arch = {"mlp": [28, 32, 32, 16, 4], "activation": "elu"}
    policy = rli.load_policy(tmp_path / "weights.pt", arch=arch)
    obs = _random_obs(policy)
    normalised = np.clip((obs - np.linspace(-1, 1, 28)) / np.sqrt(4.0 + 1e-8), -10, 10).astype(np.float32)
    np.testing.assert_allclose(policy.act(obs), actor(torch.as_tensor(normalised)).detach().numpy(), atol=1e-6)
    with pytest.raises(rli.RliError, match="arch="):
        rli.load_policy(tmp_path / "weights.pt")
    with pytest.raises(rli.RliError, match="do not fit"):
        rli.load_policy(tmp_path / "weights.pt", arch={"mlp": [28, 64, 4]})
    torch.save({"state_dict": actor.state_dict(), "arch": arch}, tmp_path / "bundle.pt")
    assert rli.load_policy(tmp_path / "bundle.pt").layer(6).width == 4


def test_safetensors_with_arch_in_metadata(tmp_path):
    from safetensors.torch import save_file

    actor = _reference_actor()
    arch = {"mlp": [28, 32, 32, 16, 4], "activation": "elu"}
    save_file(actor.state_dict(), str(tmp_path / "a.safetensors"), metadata={"rli.arch": json.dumps(arch)})
    save_file(actor.state_dict(), str(tmp_path / "b.safetensors"))
    obs = _random_obs(rli.load_policy(actor))
    expected = actor(torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_allclose(rli.load_policy(tmp_path / "a.safetensors").act(obs), expected, atol=1e-6)
    np.testing.assert_allclose(rli.load_policy(tmp_path / "b.safetensors", arch=_reference_actor).act(obs), expected,
                               atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
@pytest.mark.parametrize("suffix", [".pt", ".zip", ".safetensors"])
def test_corrupt_files_give_one_clear_error(tmp_path, content, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(rli.RliError) as info:
        rli.load_policy(path)
    assert "\n" not in str(info.value)


def test_truncated_sb3_zip(tmp_path, sb3_zip):
    _, path = sb3_zip("PPO")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(rli.RliError):
        rli.load_policy(cut)


def test_missing_file_and_unknown_object():
    with pytest.raises(rli.RliError, match="no such policy file"):
        rli.load_policy("does/not/exist.zip")
    with pytest.raises(rli.RliError, match="cannot load a policy from int"):
        rli.load_policy(3)


def test_plain_module_with_env_spaces_clips_and_argmaxes():
    box = rli.load_policy(nn.Sequential(nn.Linear(3, 1)), env="Pendulum-v1")
    with torch.no_grad():
        box.module[0].weight.fill_(100.0)
    assert np.all(np.abs(box.act(np.ones((4, 3)))) <= 2.0)
    discrete = rli.load_policy(nn.Sequential(nn.Linear(4, 2)), env="CartPole-v1")
    assert set(np.unique(discrete.act(np.random.default_rng(0).normal(size=(50, 4))))) <= {0, 1}


def test_non_sequential_module_trunk_follows_forward_order():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 2)
            self.body = nn.Linear(5, 8)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.head(self.act(self.body(x)))

    policy = rli.load_policy(Backwards(), obs_shape=(5,))
    assert [layer.name for layer in policy.actor_layers] == ["body", "act", "head"]
    with pytest.raises(rli.RliError, match="obs_shape"):
        rli.load_policy(nn.Sequential(nn.ReLU()))
