"""Train the shipped formation training series in examples/checkpoints/formation_run/.

Same PPO set-up as ``train_formation.py`` (actor/critic [256, 256, 128] Tanh, ``VecNormalize``,
8 environments), saved along training under SB3 ``CheckpointCallback`` names:

    formation_run/seed_<s>/rl_model_<N>_steps.zip            the model (SB3 format)
    formation_run/seed_<s>/rl_model_<N>_steps_vecnormalize.pkl  its observation statistics
    formation_run/seed_<s>/rl_model_<N>_steps.json           its card (examples/cards.py)

Seed 42 is saved at steps 0, 10k, 20k, 30k, 60k and 120k; seeds 43 and 44 at 120k only (the
"few seeds at the end"). The zips are saved with the Adam optimiser's moment estimates left out
(its state is emptied for the save and restored right after, so training is unchanged): a
checkpoint is ~0.9 MB instead of ~2.6 MB, still loads with ``PPO.load`` and ``rli.load_policy``,
but resuming training from it restarts Adam's moments. About 2 minutes a seed on one thread.

    python examples/train_formation_run.py [--seeds 42 43 44]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Any

import torch
from cards import write_card
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import rli  # noqa: F401 — registers rli/FormationFlight-v0

ENV = "rli/FormationFlight-v0"
OUT = Path(__file__).parent / "checkpoints" / "formation_run"
TOTAL = 120_000
SCHEDULES = {42: (0, 10_000, 20_000, 30_000, 60_000, TOTAL)}
ALGORITHM = ("PPO (SB3 MlpPolicy, actor/critic [256, 256, 128] Tanh, VecNormalize; "
             "saved without Adam's moment estimates)")


class ScheduledCheckpoints(CheckpointCallback):
    """SB3's ``CheckpointCallback`` (same file names) at a given list of steps instead of every ``save_freq``.

    Every step count must be a multiple of the number of environments (steps advance by ``n_envs``).
    """

    def __init__(self, steps: tuple[int, ...], save_path: Path, seed: int) -> None:
        super().__init__(save_freq=1, save_path=str(save_path))
        self.steps = set(steps)
        self.seed = seed
        self.saved: list[tuple[Path, int, float]] = []
        self.start = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        if 0 in self.steps:
            self._save()

    def _on_step(self) -> bool:
        if self.num_timesteps in self.steps:
            self._save()
        return True

    def _save(self) -> None:
        path = Path(self._checkpoint_path(extension="zip"))
        optimizer = self.model.policy.optimizer
        state = optimizer.state
        optimizer.state = collections.defaultdict(dict)
        try:
            self.model.save(path)
        finally:
            optimizer.state = state
        venv = self.model.get_vec_normalize_env()
        assert venv is not None
        venv.save(str(path.with_name(f"{path.stem}_vecnormalize.pkl")))
        self.saved.append((path, self.num_timesteps, time.perf_counter() - self.start))


def train(seed: int, steps: tuple[int, ...]) -> list[tuple[Path, int, float]]:
    """Train one seed to ``max(steps)`` and save a checkpoint at each of ``steps``."""
    venv = VecNormalize(make_vec_env(ENV, n_envs=8, seed=seed), norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", n_steps=256, batch_size=256, n_epochs=10,
                learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
                policy_kwargs={"net_arch": {"pi": [256, 256, 128], "vf": [256, 256, 128]},
                               "activation_fn": torch.nn.Tanh})
    callback = ScheduledCheckpoints(steps, OUT / f"seed_{seed}", seed)
    model.learn(total_timesteps=max(steps), callback=callback)
    return callback.saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()
    torch.set_num_threads(1)
    saved: list[tuple[Path, int, float, int]] = []
    for seed in args.seeds:
        saved += [(path, step, wall, seed) for path, step, wall in train(seed, SCHEDULES.get(seed, (TOTAL,)))]
    for path, step, wall, seed in saved:
        extra: dict[str, Any] = {"training_run": f"seed_{seed}", "optimizer_state": "not saved"}
        write_card(path, ENV, algorithm=ALGORITHM, timesteps=step, seed=seed, wall_time_s=wall, **extra)


if __name__ == "__main__":
    main()
