"""Capture speed: rli.capture vs a bare forward pass vs rl_interrogate's activation extraction.

100k observations through a 28→256→256→128→4 Tanh MLP; all six hidden layers
(indices 0–5) captured. Prints median wall times over repeats and the ratios.

    python benchmarks/bench_capture.py [--n 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import reference_mlp

import rli


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = reference_mlp().eval()
    obs = np.random.default_rng(0).normal(size=(args.n, 28)).astype(np.float32)
    obs_t = torch.as_tensor(obs)
    policy = rli.load_policy(model)
    layers = [0, 1, 2, 3, 4, 5]

    def bare() -> None:
        with torch.no_grad():
            model(obs_t)

    def ours() -> None:
        rli.capture(policy, obs, layers=layers)

    def reference() -> None:
        from rl_interrogate.probing import _extract_activations

        for layer in layers:  # the reference extracts one layer per forward pass
            _extract_activations(model, layer, obs)

    results = {"bare forward": timed(bare, args.repeats), "rli.capture (6 layers)": timed(ours, args.repeats),
               "rl_interrogate (6 layers)": timed(reference, args.repeats)}
    for name, seconds in results.items():
        print(f"{name:28s} {seconds * 1000:9.1f} ms")
    base = results["bare forward"]
    print(f"rli / bare forward          {results['rli.capture (6 layers)'] / base:9.2f}x")
    print(f"rl_interrogate / rli        {results['rl_interrogate (6 layers)'] / results['rli.capture (6 layers)']:9.2f}x")
    print(f"torch threads: {torch.get_num_threads()}, n = {args.n}")


if __name__ == "__main__":
    main()
