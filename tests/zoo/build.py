"""Build the zoo: tiny policies of every kind users bring, trained in seconds each from fixed seeds.

Run ``python -m tests.zoo.build`` (every entry; ``--force`` rebuilds those present, names pick entries) to write the
checkpoints into ``tests/zoo/checkpoints/``. The tests call :func:`checkpoint`, which rebuilds a missing entry and
caches it there. Training is seeded (``seed=0``, one torch thread) and optimiser moments are dropped before saving
(a fresh Adam state), so the files stay small; the weights are all a test needs.

Example:
    >>> from tests.zoo.build import ZOO
    >>> ZOO["ppo_cartpole"].files
    ('ppo_cartpole.zip',)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.zoo import envs as zoo_envs

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
SEED = 0
ENV_MODULE = zoo_envs.__name__


@dataclass(frozen=True)
class ZooEntry:
    """One zoo policy: how it is trained, the files it is saved as, and how a user would load it.

    ``algo`` is ``"module:Class"`` of the SB3 / sb3-contrib algorithm (``None`` for the plain torch module);
    ``env_id`` the gymnasium id it acts in (zoo envs in the ``module:EnvId`` form); ``files`` the files written,
    the first being the checkpoint users pass to rli.
    """

    name: str
    kind: str
    algo: str | None
    env_id: str
    files: tuple[str, ...]
    policy: str = "MlpPolicy"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    vecnormalize: bool = False
    recurrent: bool = False

    @property
    def path(self) -> Path:
        """The main checkpoint file in the shipped directory."""
        return CHECKPOINTS / self.files[0]


def _sb3(name: str, kind: str, algo: str, env_id: str, steps: int, *, policy: str = "MlpPolicy",
         net_arch: Any = (16, 16), vecnormalize: bool = False, recurrent: bool = False, policy_kwargs: Any = None,
         **algo_kwargs: Any) -> ZooEntry:
    files = (f"{name}.zip",) + ((f"{name}_vecnormalize.pkl",) if vecnormalize else ())
    kwargs = {"net_arch": list(net_arch), **(policy_kwargs or {})}
    return ZooEntry(name, kind, algo, env_id, files, policy, kwargs, algo_kwargs, steps, vecnormalize, recurrent)


_OFF_POLICY = {"buffer_size": 2000, "learning_starts": 200}
_IMAGE = {"net_arch": [16], "features_extractor_kwargs": {"features_dim": 16}}

ENTRIES: tuple[ZooEntry, ...] = (
    _sb3("ppo_cartpole", "SB3 PPO MlpPolicy", "stable_baselines3:PPO", "CartPole-v1", 2048,
         n_steps=256, batch_size=64, n_epochs=4),
    _sb3("a2c_pendulum_vecnorm", "SB3 A2C + VecNormalize", "stable_baselines3:A2C", "Pendulum-v1", 2000,
         vecnormalize=True, n_steps=8),
    _sb3("dqn_cartpole", "SB3 DQN", "stable_baselines3:DQN", "CartPole-v1", 3000,
         target_update_interval=250, exploration_fraction=0.3, **_OFF_POLICY),
    _sb3("sac_pendulum", "SB3 SAC", "stable_baselines3:SAC", "Pendulum-v1", 600, **_OFF_POLICY),
    _sb3("td3_pendulum", "SB3 TD3", "stable_baselines3:TD3", "Pendulum-v1", 600, **_OFF_POLICY),
    _sb3("ppo_goal_dict", "SB3 PPO MultiInputPolicy (Dict observations)", "stable_baselines3:PPO",
         f"{ENV_MODULE}:ZooGoal-v0", 1024, policy="MultiInputPolicy", n_steps=128, batch_size=64, n_epochs=4),
    _sb3("ppo_cnn_chw", "SB3 PPO CnnPolicy, channels first (1×36×36 uint8)", "stable_baselines3:PPO",
         f"{ENV_MODULE}:ZooImage-v0", 256, policy="CnnPolicy", net_arch=[16],
         policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}}, n_steps=64, batch_size=32, n_epochs=2),
    _sb3("ppo_cnn_hwc", "SB3 PPO CnnPolicy, channels last (36×36×3 uint8)", "stable_baselines3:PPO",
         f"{ENV_MODULE}:ZooImageLast-v0", 256, policy="CnnPolicy", net_arch=[16],
         policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}}, n_steps=64, batch_size=32, n_epochs=2),
    _sb3("recurrentppo_cartpole", "sb3-contrib RecurrentPPO MlpLstmPolicy", "sb3_contrib:RecurrentPPO", "CartPole-v1",
         1024, policy="MlpLstmPolicy", net_arch=[16], policy_kwargs={"lstm_hidden_size": 16}, recurrent=True,
         n_steps=128, batch_size=64, n_epochs=4),
    _sb3("qrdqn_cartpole", "sb3-contrib QRDQN", "sb3_contrib:QRDQN", "CartPole-v1", 3000,
         policy_kwargs={"n_quantiles": 10}, target_update_interval=250, exploration_fraction=0.3, **_OFF_POLICY),
    _sb3("tqc_pendulum", "sb3-contrib TQC", "sb3_contrib:TQC", "Pendulum-v1", 600,
         policy_kwargs={"n_quantiles": 5, "n_critics": 2}, **_OFF_POLICY),
    _sb3("trpo_cartpole", "sb3-contrib TRPO", "sb3_contrib:TRPO", "CartPole-v1", 2048, n_steps=256, batch_size=64),
    ZooEntry("residual_statedict", "custom residual nn.Module, state dict (.pt) + arch=", None, "CartPole-v1",
             ("residual_statedict.pt",)),
    ZooEntry("residual_torchscript", "custom residual nn.Module, TorchScript (torch.jit.script)", None, "CartPole-v1",
             ("residual_torchscript.pt",)),
    ZooEntry("residual_safetensors", "custom residual nn.Module, safetensors + arch=", None, "CartPole-v1",
             ("residual_safetensors.safetensors",)),
)
ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in ENTRIES}


def algorithm_class(entry: ZooEntry) -> type:
    """The SB3 / sb3-contrib algorithm class of an entry (``PPO``, ``QRDQN``, …)."""
    if entry.algo is None:
        raise ValueError(f"{entry.name} is a plain torch module, not an SB3 model")
    module, name = entry.algo.split(":")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _drop_optimizer_moments(model: Any) -> None:
    """Empty every optimiser's per-parameter state (Adam moments): the zip keeps only the settings."""
    names, _ = model._get_torch_save_params()
    for name in names:
        obj = model
        for part in name.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.optim.Optimizer):
            obj.state.clear()


def _build_sb3(entry: ZooEntry, directory: Path) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = make_vec_env(entry.env_id, n_envs=1, seed=SEED)
    if entry.vecnormalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = algorithm_class(entry)(entry.policy, venv, policy_kwargs=entry.policy_kwargs, seed=SEED, device="cpu",
                                       **entry.algo_kwargs)
        model.learn(entry.steps)
    _drop_optimizer_moments(model)
    _atomic(directory / entry.files[0], lambda tmp: model.save(tmp), suffix=".zip")
    if entry.vecnormalize:
        _atomic(directory / entry.files[1], venv.save)
    venv.close()


def heuristic_cartpole_action(obs: np.ndarray) -> np.ndarray:
    """A hand-written CartPole controller (push towards where the pole falls): the residual net imitates it."""
    obs = np.atleast_2d(obs)
    return (obs[:, 2] + 0.5 * obs[:, 3] + 0.01 * obs[:, 1] > 0).astype(np.int64)


def train_residual() -> torch.nn.Module:
    """:class:`~tests.zoo.nets.ResidualPolicy` fitted (cross-entropy, Adam, seeded) to the heuristic controller."""
    import gymnasium as gym

    from tests.zoo.nets import ResidualPolicy

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(SEED)
    states = []
    for episode in range(20):
        obs, _ = env.reset(seed=SEED + episode)
        for _ in range(200):
            states.append(obs)
            action = int(heuristic_cartpole_action(obs)[0]) if rng.random() > 0.2 else int(rng.integers(2))
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    env.close()
    x = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    y = torch.as_tensor(heuristic_cartpole_action(np.asarray(states)))
    torch.manual_seed(SEED)
    net = ResidualPolicy()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    return net.eval()


def _build_residual(entry: ZooEntry, directory: Path) -> None:
    net = train_residual()
    target = directory / entry.files[0]
    if entry.name == "residual_statedict":
        _atomic(target, lambda tmp: torch.save(net.state_dict(), tmp))
    elif entry.name == "residual_torchscript":
        _atomic(target, lambda tmp: torch.jit.script(net).save(str(tmp)))
    else:
        from safetensors.torch import save_file

        _atomic(target, lambda tmp: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp)),
                suffix=".safetensors")


def _atomic(target: Path, write: Callable[[Path], Any], suffix: str = "") -> None:
    """Write through a temporary file in the same directory, then rename: a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary shared file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def build(name: str, directory: Path = CHECKPOINTS) -> Path:
    """Train entry ``name`` and write its files into ``directory``; returns its main checkpoint path."""
    entry = ZOO[name]
    with _one_thread():
        if entry.algo is None:
            _build_residual(entry, directory)
        else:
            _build_sb3(entry, directory)
    return directory / entry.files[0]


def checkpoint(name: str, directory: Path = CHECKPOINTS) -> Path:
    """Path of entry ``name``'s checkpoint, built (and cached in ``directory``) if any of its files is missing."""
    entry = ZOO[name]
    if not all((directory / file).is_file() for file in entry.files):
        build(name, directory)
    return directory / entry.files[0]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.zoo.build [--force] [NAME ...]``: build the zoo (missing entries, or all with --force)."""
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"entries to build (default: all): {', '.join(ZOO)}")
    parser.add_argument("--force", action="store_true", help="rebuild entries whose files exist")
    parser.add_argument("--dir", type=Path, default=CHECKPOINTS, help="output directory (default: %(default)s)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ZOO))
    if unknown:
        parser.error(f"unknown zoo entries {', '.join(unknown)}; choose from {', '.join(ZOO)}")
    for name in args.names or list(ZOO):
        entry = ZOO[name]
        if args.force or not all((args.dir / file).is_file() for file in entry.files):
            build(name, args.dir)
        sizes = ", ".join(f"{file} {(args.dir / file).stat().st_size / 1024:.1f} KiB" for file in entry.files)
        print(f"{name:24s} {entry.kind}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
