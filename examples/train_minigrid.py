"""Train the MiniGrid DoorKey-5x5 CNN PPO checkpoint shipped in examples/checkpoints/ (seeded, minutes on 2 cores).

SB3 PPO ``CnnPolicy`` with :class:`rli.envs.minigrid_nets.MiniGridCNN` (three 2×2 convs,
16/32/64 channels, linear to 64, ReLU; raw integer codes, ``normalize_images=False``) and a
64-unit Tanh head for the actor and for the critic, on ``rli/MiniGridDoorKey-v0`` (partial
7×7 egocentric view). Hyperparameters follow rl-starter-files' DoorKey settings (8 envs ×
128 steps, 4 epochs, batch 256, lr 1e-3, entropy 0.01). One torch thread. Writes the
checkpoint (≈1 MB; the optimizer state stays in, since SB3's own ``PPO.load`` needs it)
and its card, which records the success rate and mean return over 100 seeded episodes
(seeds 10000…10099) measured with ``rli.evaluate``.

    python examples/train_minigrid.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import rli
from rli.envs.minigrid_env import DOORKEY
from rli.envs.minigrid_nets import MiniGridCNN

sys.path.insert(0, str(Path(__file__).parent))
from cards import write_card

SEED = 0
STEPS = 60_000
OUT = Path(__file__).parent / "checkpoints"
CHECKPOINT = OUT / "minigrid_doorkey_ppo_seed0.zip"
EVAL_EPISODES, EVAL_SEED = 100, 10_000
POLICY_KWARGS = {"features_extractor_class": MiniGridCNN, "features_extractor_kwargs": {"features_dim": 64},
                 "net_arch": {"pi": [64], "vf": [64]}, "normalize_images": False}


def main(steps: int = STEPS) -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    env = make_vec_env(DOORKEY, n_envs=8, seed=SEED)
    model = PPO("CnnPolicy", env, seed=SEED, device="cpu", verbose=0, n_steps=128, batch_size=256, n_epochs=4,
                learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, clip_range=0.2,
                policy_kwargs=POLICY_KWARGS)
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    OUT.mkdir(exist_ok=True)
    model.save(CHECKPOINT)
    policy = rli.load_policy(CHECKPOINT)
    result = rli.evaluate(policy, DOORKEY, episodes=EVAL_EPISODES, seed=EVAL_SEED, progress=False)
    success = float(np.mean(result.returns > 0))
    write_card(CHECKPOINT, DOORKEY, eval_episodes=EVAL_EPISODES, eval_seed=EVAL_SEED,
               algorithm="PPO (stable-baselines3 CnnPolicy, rli.envs.minigrid_nets.MiniGridCNN 16/32/64 2×2 convs "
                         "→ 64 ReLU, heads [64] Tanh, normalize_images=False)",
               timesteps=steps, seed=SEED, wall_time_s=wall, success_rate=success,
               observation="partial 7×7×3 egocentric view (minigrid ImgObsWrapper)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else STEPS)
