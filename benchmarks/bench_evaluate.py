"""Rollout speed: rli.evaluate vs SB3's evaluate_policy vs raw environment stepping (the physical limit).

Same policy, same number of episodes, same process. Reports environment steps per
second and the ratios; targets: rli ≥ 3× SB3's evaluate_policy, within 1.5× of raw
stepping with random actions.

    python benchmarks/bench_evaluate.py [--episodes 16]
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import rli

CASES = {
    "HalfCheetah-v5": ("examples/checkpoints/halfcheetah_ppo_seed0.zip",
                       "examples/checkpoints/halfcheetah_ppo_seed0_vecnormalize.pkl"),
    "Pendulum-v1": (None, None),
}


def pendulum_model() -> PPO:
    return PPO("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64, 64]})


def raw_steps(env_id: str, steps: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # SB3 gets the same single-threaded torch rli.evaluate uses
    for env_id, (checkpoint, stats_path) in CASES.items():
        if checkpoint is None:
            model = pendulum_model()
            policy = rli.load_policy(model)
            sb3_env = DummyVecEnv([lambda env_id=env_id: gym.make(env_id)])
        else:
            model = PPO.load(checkpoint, device="cpu")
            policy = rli.load_policy(checkpoint)
            sb3_env = VecNormalize.load(stats_path, DummyVecEnv([lambda env_id=env_id: gym.make(env_id)]))
            sb3_env.training, sb3_env.norm_reward = False, False
        start = time.perf_counter()
        result = rli.evaluate(policy, env_id, episodes=args.episodes, seed=0, progress=False)
        ours = result.lengths.sum() / (time.perf_counter() - start)
        start = time.perf_counter()
        _, lengths = evaluate_policy(model, sb3_env, n_eval_episodes=args.episodes, deterministic=True,
                                     return_episode_rewards=True)
        sb3 = np.sum(lengths) / (time.perf_counter() - start)
        raw = raw_steps(env_id, int(result.lengths.sum()))
        print(f"{env_id}: {args.episodes} episodes, {int(result.lengths.sum())} steps")
        print(f"  raw env stepping (random actions)  {raw:10.0f} steps/s")
        print(f"  rli.evaluate (8 envs, batched)     {ours:10.0f} steps/s")
        print(f"  SB3 evaluate_policy                {sb3:10.0f} steps/s")
        print(f"  rli / SB3 = {ours / sb3:.2f}x    raw / rli = {raw / ours:.2f}x")


if __name__ == "__main__":
    main()
