"""Checkpoint cards: what was trained, how, how well it does (measured with rli.evaluate), and how to interrogate it.

A card is ``<checkpoint stem>.json`` beside the checkpoint. Its ``"interrogate"`` block
gives ``rli interrogate`` / ``rli.interrogate`` their defaults (schema: docs/cli.md);
the blocks for the shipped environments are in ``INTERROGATE``. To refresh that block in
the existing cards without retraining or re-evaluating:

    python examples/cards.py
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import rli

CHECKPOINTS = Path(__file__).parent / "checkpoints"

# The paper's protocol (WakeRider §3.3) on the formation task: probe the reference grid
# (sensor at 0, so the upwash must be computed from position), invert the upwash sensor
# (index 12) on the steady-flight grid, where it reads the field.
INTERROGATE: dict[str, dict[str, Any]] = {
    "rli/FormationFlight-v0": {
        "target": "true_upwash",
        "target_unit": "m/s",
        "layer": 5,
        "sensors": [12],
        "probe_obs": {"call": "rli.envs:probe_grid", "kwargs": {"nominal": "reference"}},
        "polarity_obs": {"call": "rli.envs:probe_grid", "kwargs": {"nominal": "flight"}},
        "grid_axes": [{"index": 10, "label": "follower y − leader y (lateral)", "unit": "m"},
                      {"index": 9, "label": "follower x − leader x (along track)", "unit": "m"}],
    },
    # Forward velocity is observation entry 8 (qvel[0], the root's x velocity) and the quantity
    # the reward pays for; its polarity test negates that entry on the visited states.
    "HalfCheetah-v5": {"target": "obs[8]", "target_unit": "m/s", "layer": 5, "sensors": [8]},
}


def write_card(checkpoint: Path, env: Any, *, algorithm: str, timesteps: int, seed: int, wall_time_s: float,
               eval_episodes: int = 30, eval_seed: int = 10_000, interrogate: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    """Evaluate the saved checkpoint exactly as users load it and write ``<checkpoint>.json`` beside it.

    ``interrogate`` is the card's interrogation block (default: ``INTERROGATE[env]`` when there is one).
    """
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
    block = interrogate if interrogate is not None else INTERROGATE.get(env)
    if block is not None:
        card["interrogate"] = block
        rli.protocol.card_settings(card, where=str(checkpoint.with_suffix(".json")))
    checkpoint.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(card, indent=2, ensure_ascii=False))
    return card


def refresh_interrogate_blocks(directory: Path = CHECKPOINTS) -> list[Path]:
    """Set the ``"interrogate"`` block of every card in ``directory`` whose env has one in ``INTERROGATE``."""
    changed = []
    for path in sorted(directory.glob("*.json")):
        card = json.loads(path.read_text())
        block = INTERROGATE.get(card.get("env"))
        if block is None or card.get("interrogate") == block:
            continue
        card["interrogate"] = block
        rli.protocol.card_settings(card, where=str(path))
        path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        changed.append(path)
    return changed


if __name__ == "__main__":
    for written in refresh_interrogate_blocks():
        print(f"updated {written}")
