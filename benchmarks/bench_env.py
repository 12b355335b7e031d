"""FormationFlight-v0 speed: raw class, ``gym.make`` (with its wrappers), SyncVectorEnv of 8.

Seeded random actions (drawn up front, so drawing them is not timed); episodes are
reset when they end. Prints steps per second (best of ``--repeats`` runs, the
machine is shared) and, with ``--write``, writes (or rewrites) the "bench_env"
section of benchmarks/README.md.

    python benchmarks/bench_env.py [--steps 40000] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import cpu_model

from rli.envs import FORMATION_FLIGHT, FormationFlightEnv, probe_grid

RESULTS = Path(__file__).parent / "README.md"


def single_env_rate(env: gym.Env, steps: int) -> float:
    """Steps per second of one env under seeded random actions."""
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4)).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env_rate(n_envs: int, steps: int) -> float:
    """Environment steps per second (n_envs per call) of a SyncVectorEnv, which resets ended envs itself."""
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(FORMATION_FLIGHT) for _ in range(n_envs)])
    calls = steps // n_envs
    actions = np.random.default_rng(0).uniform(-1, 1, (calls, n_envs, 4)).astype(np.float32)
    vec.reset(seed=list(range(n_envs)))
    start = time.perf_counter()
    for action in actions:
        vec.step(action)
    elapsed = time.perf_counter() - start
    vec.close()
    return calls * n_envs / elapsed


def probe_grid_time() -> float:
    """Seconds to build the 80×120 probe grid (observations and wake labels)."""
    start = time.perf_counter()
    probe_grid()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the bench_env section of benchmarks/README.md")
    args = parser.parse_args()
    cases = {
        "raw class (FormationFlightEnv())": lambda: single_env_rate(FormationFlightEnv(), args.steps),
        "gym.make (TimeLimit, OrderEnforcing, PassiveEnvChecker)": lambda: single_env_rate(
            gym.make(FORMATION_FLIGHT), args.steps),
        "SyncVectorEnv of 8 gym.make envs": lambda: vector_env_rate(8, args.steps),
    }
    rates = {name: max(run() for _ in range(args.repeats)) for name, run in cases.items()}
    grid_seconds = min(probe_grid_time() for _ in range(args.repeats))
    load = os.getloadavg()[0]
    lines = [f"| {name} | {rate:,.0f} |" for name, rate in rates.items()]
    table = "\n".join(["| configuration | env steps/s |", "|---|---:|", *lines])
    print(table)
    print(f"probe_grid() (9,600 observations + wake labels): {grid_seconds * 1e3:.1f} ms")
    print(f"load average during the run: {load:.2f}")
    if args.write:
        section = (
            f"## bench_env\n\n"
            f"`python benchmarks/bench_env.py --steps {args.steps} --repeats {args.repeats}` on "
            f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores ({cpu_model()}), Python "
            f"{platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}; "
            f"best of {args.repeats} runs, seeded random actions, 1-minute load average {load:.2f} "
            f"(the machine is shared).\n\n{table}\n\n"
            f"`probe_grid()` (9,600 observations with their wake labels, one vectorised call): "
            f"{grid_seconds * 1e3:.1f} ms.\n"
        )
        text = RESULTS.read_text() if RESULTS.exists() else "# Environment benchmarks\n"
        if "## bench_env\n" in text:  # replace our previous section, keep the others
            text = re.sub(r"## bench_env\n.*?(?=^## |\Z)", lambda _: section + "\n", text, flags=re.S | re.M).rstrip() + "\n"
        else:
            text = text.rstrip() + "\n\n" + section
        RESULTS.write_text(text)
        print(f"wrote the bench_env section of {RESULTS}")


if __name__ == "__main__":
    main()
