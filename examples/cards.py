"""Checkpoint cards: what was trained, how, and how well it does (measured with rli.evaluate)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import rli


def write_card(checkpoint: Path, env: Any, *, algorithm: str, timesteps: int, seed: int, wall_time_s: float,
               eval_episodes: int = 30, eval_seed: int = 10_000, **extra: Any) -> dict[str, Any]:
    """Evaluate the saved checkpoint exactly as users load it and write ``<checkpoint>.json`` beside it."""
    policy = rli.load_policy(checkpoint)
    result = rli.evaluate(policy, env, episodes=eval_episodes, seed=eval_seed, progress=False)
    low, high = rli.stats.bootstrap_ci(result.returns, seed=0)
    card = {
        "checkpoint": checkpoint.name,
        "algorithm": algorithm,
        "env": env,
        "timesteps": timesteps,
        "seed": seed,
        "wall_time_s": round(wall_time_s, 1),
        "eval": {"episodes": eval_episodes, "seeds": f"{eval_seed}..{eval_seed + eval_episodes - 1}",
                 "deterministic": True, "mean_return": round(result.mean, 2),
                 "return_ci95_bootstrap": [round(low, 2), round(high, 2)], "mean_length": float(result.lengths.mean())},
        "fingerprint": policy.fingerprint,
        "normalizer": policy.normalizer.source if policy.normalizer is not None else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **extra,
    }
    checkpoint.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return card
