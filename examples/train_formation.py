"""Train the seed-42 PPO policy on rli/FormationFlight-v0 shipped in examples/checkpoints/.

Actor: three hidden Linear+Tanh pairs [256, 256, 128] (so ``layer=5`` is the third hidden
activation, as in the paper), observations standardised by ``VecNormalize`` (saved beside
the zip, applied by ``rli.load_policy``). About 5 minutes on 2 cores.

    python examples/train_formation.py [--steps 300000]
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

import rli  # noqa: F401 — registers rli/FormationFlight-v0

ENV = "rli/FormationFlight-v0"
SEED = 42
OUT = Path(__file__).parent / "checkpoints" / "formation_ppo_seed42.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    venv = VecNormalize(make_vec_env(ENV, n_envs=8, seed=SEED), norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = PPO("MlpPolicy", venv, seed=SEED, device="cpu", n_steps=256, batch_size=256, n_epochs=10,
                learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
                policy_kwargs={"net_arch": {"pi": [256, 256, 128], "vf": [256, 256, 128]}, "activation_fn": torch.nn.Tanh})
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start
    OUT.parent.mkdir(exist_ok=True)
    model.save(OUT)
    venv.save(OUT.with_name(f"{OUT.stem}_vecnormalize.pkl"))
    write_card(OUT, ENV, algorithm="PPO (SB3 MlpPolicy, actor/critic [256, 256, 128] Tanh, VecNormalize)",
               timesteps=args.steps, seed=SEED, wall_time_s=wall)


if __name__ == "__main__":
    main()
