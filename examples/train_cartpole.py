"""Train the small CartPole PPO checkpoint shipped in examples/checkpoints/ (seeded, ~1 minute on 2 cores).

Actor: three hidden Linear+Tanh pairs (64 units), so ``layer=5`` is the third hidden
activation, as in the paper's numbering. Writes the checkpoint and its card.

    python examples/train_cartpole.py
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy

SEED = 0
STEPS = 60_000
OUT = Path(__file__).parent / "checkpoints"


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = PPO("MlpPolicy", "CartPole-v1", seed=SEED, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [64, 64, 64]})
    model.learn(total_timesteps=STEPS)
    wall = time.perf_counter() - start
    OUT.mkdir(exist_ok=True)
    model.save(OUT / "cartpole_ppo_seed0.zip")
    returns, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=30, deterministic=True,
                                 return_episode_rewards=True)
    returns = np.asarray(returns, dtype=float)
    half = stats.t.ppf(0.975, len(returns) - 1) * returns.std(ddof=1) / np.sqrt(len(returns)) if returns.std() else 0.0
    card = {
        "checkpoint": "cartpole_ppo_seed0.zip",
        "algorithm": "PPO (stable-baselines3 MlpPolicy, net_arch [64, 64, 64], Tanh)",
        "env": "CartPole-v1",
        "timesteps": STEPS,
        "seed": SEED,
        "wall_time_s": round(wall, 1),
        "eval_episodes": len(returns),
        "eval_return_mean": float(returns.mean()),
        "eval_return_ci95": [float(returns.mean() - half), float(returns.mean() + half)],
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
    }
    (OUT / "cartpole_ppo_seed0.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
