"""rli.runs.sweep: 16 checkpoints × a layer profile, in-process vs 2 processes vs Ray (2 CPUs); store costs.

    python benchmarks/bench_sweep.py [--controls] [--n 2000]

Makes 16 CartPole PPO checkpoints (SB3 CheckpointCallback, net [64, 64, 64] Tanh, 2 seeds × 8 steps)
in a temporary folder, then times, side by side on the same machine:

* the sweep in-process (the floor a parallel run is compared with: the same units, one after another),
  with 2 spawned processes, and on a local Ray instance of 2 CPUs (start-up included, and Ray's start-up
  alone); speedup = in-process time / parallel time, against the ideal of 2;
* store overhead per unit: in-process with a fresh store minus without a store, over 16 units;
* resume cost: the same sweep again on the full store (every unit read back, each checkpoint still
  loaded to get its fingerprint), and after an interruption half-way (8 units missing).

It also checks that every executor gave identical records.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_model


def make_checkpoints(root: Path) -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env

    from rli.threads import one_torch_thread

    with one_torch_thread():
        for seed in (0, 1):
            model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=seed), n_steps=64, batch_size=64,
                        n_epochs=2, seed=seed, device="cpu",
                        policy_kwargs={"net_arch": [64, 64, 64], "activation_fn": torch.nn.Tanh})
            model.learn(total_timesteps=512, callback=CheckpointCallback(save_freq=64,
                                                                         save_path=str(root / f"seed_{seed}")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--controls", action="store_true", help="probe controls on (about 10x the work per unit)")
    parser.add_argument("--n", type=int, default=2000, help="observations per probe")
    args = parser.parse_args()

    import numpy as np

    import rli.runs as runs
    from rli.observations import ObsSet

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    make_checkpoints(work / "runs")
    found = runs.discover(str(work / "runs"))
    assert len(found) == 16, found
    rng = np.random.default_rng(0)
    ObsSet(rng.normal(scale=(1.0, 0.5, 0.1, 0.5), size=(args.n, 4)).astype(np.float32)).save(work / "obs.npz")
    spec = runs.Profile(obs=runs.Obs.file(work / "obs.npz"), target="obs[2]", controls=args.controls)
    pattern = str(work / "runs")

    def timed(label: str, **kwargs: object) -> tuple[float, object]:
        start = time.perf_counter()
        table = runs.sweep(pattern, spec, progress=False, **kwargs)
        seconds = time.perf_counter() - start
        print(f"{label:<40} {seconds:8.2f} s   {table!r}", flush=True)
        return seconds, table

    timed("warm-up (imports, first loads)")
    t_in, ref = timed("in-process")
    t_proc, procs = timed("processes (2, spawn)", executor=runs.Processes(workers=2))
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_ray_start = time.perf_counter() - start
    t_ray, rayed = timed("ray (2 CPUs, instance already up)", executor="ray")
    t_ray2, _ = timed("ray again (workers warm)", executor="ray")
    ray.shutdown()
    same = ref.to_records() == procs.to_records() == rayed.to_records()  # type: ignore[attr-defined]
    store = work / "store"
    t_store, _ = timed("in-process, fresh store", store=store)
    t_resume, _ = timed("rerun on the full store (all cached)", store=store)
    half = work / "half"
    runs.sweep([c.path for c in found[:8]], spec, store=half, progress=False)
    t_half, _ = timed("resume after half (8 units missing)", store=half)
    units = len(found)
    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; python "
          f"{platform.python_version()}; {sys.platform}")
    print(f"units: {units} checkpoints x 1 profile ({len(ref) // units} rows each), n={args.n}, "
          f"controls={args.controls}")
    print(f"in-process {t_in:.2f} s ({t_in / units:.2f} s/unit)")
    print(f"processes(2) {t_proc:.2f} s: speedup {t_in / t_proc:.2f}x (ideal 2)")
    print(f"ray(2) start {t_ray_start:.2f} s; sweep {t_ray:.2f} s: speedup {t_in / t_ray:.2f}x; warm {t_ray2:.2f} s: "
          f"{t_in / t_ray2:.2f}x; with start-up {t_in / (t_ray + t_ray_start):.2f}x")
    print(f"store overhead {(t_store - t_in) / units * 1000:+.1f} ms/unit; full-store rerun {t_resume:.2f} s "
          f"({t_resume / units * 1000:.0f} ms/unit, {t_resume / t_in:.1%} of computing); resume after half "
          f"{t_half:.2f} s ({t_half / t_in:.0%} of the full sweep)")
    print(f"identical records across executors: {same}")


if __name__ == "__main__":
    main()
