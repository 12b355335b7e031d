"""Shared by the tests/test_runs_*.py files: tiny training runs saved by SB3's CheckpointCallback, custom analyses.

No tests here. The runs are made once per process (CartPole PPO, 4 checkpoints × 2 seeds, seed 1 with
VecNormalize and ``save_vecnormalize=True``), about 2 s in all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

STEPS = (32, 64, 96, 128)
_made: dict[str, Path] = {}


def make_runs(base: Path) -> Path:
    """``base/runs/seed_<s>/rl_model_<N>_steps.zip`` for seeds 0 and 1, made once per process."""
    if "runs" in _made:
        return _made["runs"]
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rli.threads import one_torch_thread

    root = base / "runs"
    with one_torch_thread():
        for seed in (0, 1):
            env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
            if seed == 1:
                env = VecNormalize(env, norm_reward=False)
            model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=seed, device="cpu",
                        policy_kwargs={"net_arch": [16, 16], "activation_fn": torch.nn.Tanh})
            callback = CheckpointCallback(save_freq=32, save_path=str(root / f"seed_{seed}"),
                                          save_vecnormalize=seed == 1)
            model.learn(total_timesteps=STEPS[-1], callback=callback)
            env.close()
    _made["runs"] = root
    return root


def calls_file() -> Path | None:
    """Where :func:`counted` appends one line per call (``$RLI_TEST_CALLS``)."""
    path = os.environ.get("RLI_TEST_CALLS")
    return Path(path) if path else None


def counted(policy: Any, layer: int = 1) -> list[dict[str, Any]]:
    """A cheap analysis (mean activation of ``layer`` on fixed inputs) that records each call."""
    import numpy as np

    from rli.capture import capture

    where = calls_file()
    if where is not None:
        with where.open("a") as handle:
            handle.write(f"{policy.source}\n")
    acts = capture(policy, np.linspace(-1, 1, 40, dtype=np.float32).reshape(10, 4), [layer])[layer]
    return [{"metric": "mean_activation", "value": float(acts.mean()), "layer": f"actor.{layer}"}]


def fail_on(policy: Any, name: str) -> list[dict[str, Any]]:
    """Raise for the checkpoint whose file name is ``name``; else :func:`counted`."""
    if Path(policy.source).name == name:
        raise ValueError(f"deliberate failure on {name}")
    return counted(policy)


def exit_on(policy: Any, name: str) -> list[dict[str, Any]]:
    """Kill the worker process (``os._exit``) on the checkpoint ``name``: only for out-of-process executors."""
    if Path(policy.source).name == name:
        os._exit(3)
    return counted(policy)


def interrupt_on(policy: Any, name: str) -> list[dict[str, Any]]:
    """Raise KeyboardInterrupt (Ctrl-C) on the checkpoint ``name``, after counting the call."""
    rows = counted(policy)
    if Path(policy.source).name == name:
        raise KeyboardInterrupt
    return rows


def crash_once(policy: Any, name: str, marker: str) -> list[dict[str, Any]]:
    """Kill the worker on checkpoint ``name`` the first time (when ``marker`` does not exist yet); else :func:`counted`.

    Only for out-of-process executors on the first run; a rerun (any executor) finds the marker and computes.
    """
    if Path(policy.source).name == name and not Path(marker).exists():
        Path(marker).write_text("crashed once\n")
        os._exit(3)
    return counted(policy)


def fail_once(policy: Any, name: str, marker: str) -> list[dict[str, Any]]:
    """Raise on checkpoint ``name`` the first time (when ``marker`` does not exist yet); else :func:`counted`."""
    if Path(policy.source).name == name and not Path(marker).exists():
        Path(marker).write_text("failed once\n")
        raise RuntimeError(f"deliberate failure on {name}")
    return counted(policy)
