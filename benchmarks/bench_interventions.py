"""Cost of an active intervention: 100k observations through a 28→256→256→128→4 Tanh MLP.

Times (best and median of interleaved repeats, after a warm-up):

* the bare forward pass (``model(x)`` under ``no_grad``, one batch);
* ``policy.act`` (numpy in/out, validation, chunking) without and with
  ``rli.ablate(policy, 5, direction)``;
* the bare forward pass with the ablation hook active (the hook's own cost);
* the same forward pass under the reference toolkit's ``AblationHook``;
* a 16-dimensional ablation and a 120-dimensional ``keep_subspace`` (which works
  through the 8-dimensional complement);
* the per-call cost on rollout-sized batches (1 and 16 observations).

Run: ``python benchmarks/bench_interventions.py [--n 100000] [--repeats 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import timeit
from collections.abc import Callable

import numpy as np
import torch
from common import cpu_model, interleaved, reference_mlp
from torch import nn

import rli


def _with_reference(model: nn.Module, direction: np.ndarray, run: Callable[[], object]) -> object:
    """``run()`` under the reference toolkit's AblationHook (registered on construction, as it does)."""
    from rl_interrogate.ablation import AblationHook

    hook = AblationHook(model, 5, direction=direction)
    try:
        return run()
    finally:
        hook.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    model = reference_mlp()
    policy = rli.load_policy(model)
    obs = np.random.default_rng(0).normal(size=(args.n, 28)).astype(np.float32)
    x = torch.from_numpy(obs)
    direction = np.random.default_rng(1).normal(size=128)
    cut = rli.ablate(policy, 5, direction)
    wide = rli.ablate(policy, 5, np.random.default_rng(2).normal(size=(128, 16)))
    keep = rli.keep_subspace(policy, 5, np.random.default_rng(3).normal(size=(128, 120)))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    def under(intervention: rli.Intervention, run: Callable[[], object]) -> Callable[[], object]:
        def timed() -> object:
            with intervention:
                return run()
        return timed

    times, _ = interleaved({
        "bare forward": forward,
        "forward + rli.ablate (1 dir)": under(cut, forward),
        "forward + reference AblationHook": lambda: _with_reference(model, direction, forward),
        "forward + rli.ablate (16 dirs)": under(wide, forward),
        "forward + rli.keep_subspace (120 dirs)": under(keep, forward),
        "policy.act": lambda: policy.act(obs),
        "policy.act + rli.ablate (1 dir)": under(cut, lambda: policy.act(obs)),
    }, args.repeats)

    best = {name: min(values) for name, values in times.items()}
    typical = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.n} observations, 28→256→256→128→4 Tanh MLP, ablation at layer 5 (width 128), "
          f"{args.repeats} interleaved repeats")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"{'':40s} {'best ms':>8s} {'median ms':>10s} {'× bare (best)':>14s}")
    for name in times:
        print(f"{name:40s} {best[name] * 1e3:8.1f} {typical[name] * 1e3:10.1f} {best[name] / best['bare forward']:14.2f}")
    print(f"policy.act + rli.ablate over bare forward: {best['policy.act + rli.ablate (1 dir)'] / best['bare forward']:.2f}×; "
          f"over policy.act: {best['policy.act + rli.ablate (1 dir)'] / best['policy.act']:.2f}×")

    print("\nper call on rollout-sized batches (µs, best of 5 × 2000 calls):")
    for rows in (1, 16):
        small = torch.from_numpy(obs[:rows])

        def step(small: torch.Tensor = small) -> torch.Tensor:
            with torch.no_grad():
                return model(small)

        per_call = {name: min(timeit.repeat(run, number=2000, repeat=5)) / 2000 * 1e6 for name, run in {
            "bare": step,
            "rli.ablate": under(cut, step),
            "reference": lambda: _with_reference(model, direction, step),
        }.items()}
        print(f"  {rows:2d} rows: " + ", ".join(f"{name} {us:.1f}" for name, us in per_call.items()))


if __name__ == "__main__":
    main()
