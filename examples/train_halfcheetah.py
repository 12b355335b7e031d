"""Train the PPO HalfCheetah-v5 policy shipped in examples/checkpoints/ (seeded; ~30 minutes on 2 cores).

Actor: three hidden Linear+Tanh pairs [128, 128, 128], so the last hidden layer (the one
the reference's PC1 ablation hooks, ``policy_net[5]``) is ``layer=5``. Observations are
standardised by ``VecNormalize`` (saved beside the zip, applied by ``rli.load_policy``).

    python examples/train_halfcheetah.py [--steps 1000000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from cards import write_card
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

ENV = "HalfCheetah-v5"
SEED = 0
OUT = Path(__file__).parent / "checkpoints" / "halfcheetah_ppo_seed0.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    venv = VecNormalize(make_vec_env(ENV, n_envs=8, seed=SEED), norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = PPO("MlpPolicy", venv, seed=SEED, device="cpu", n_steps=512, batch_size=256, n_epochs=10,
                learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, max_grad_norm=0.5,
                policy_kwargs={"net_arch": {"pi": [128, 128, 128], "vf": [128, 128, 128]},
                               "activation_fn": torch.nn.Tanh, "log_std_init": -1.0})
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start
    OUT.parent.mkdir(exist_ok=True)
    model.save(OUT)
    venv.save(OUT.with_name(f"{OUT.stem}_vecnormalize.pkl"))
    write_card(OUT, ENV, algorithm="PPO (SB3 MlpPolicy, actor/critic [128, 128, 128] Tanh, VecNormalize)",
               timesteps=args.steps, seed=SEED, wall_time_s=wall, eval_episodes=20)


if __name__ == "__main__":
    main()
