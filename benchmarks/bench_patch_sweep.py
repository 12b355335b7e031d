"""Cost of an activation-patching sweep: every unit of one layer of a 28→256→256→128→4 Tanh MLP, on n rows.

Times (best of interleaved repeats, after a warm-up, one torch thread as patch_sweep uses):

* one forward + backward pass of the batch (the unit of cost of attribution patching);
* a hand-written exact sweep, the floor: the 256 patched copies of the batch stacked into one
  ``torch.where`` at layer 3 and one forward pass of the stacked rows (no rli);
* ``patch_sweep(..., over=("layer", "unit"), layers=[3])`` at several ``chunk_size`` (rows per
  stacked forward pass);
* ``patch_sweep(..., screen="attribution", top=8)``: the gradient screen and 8 exact patches;
* the paired-return metric's cost per rollout step: ``rli.evaluate`` of the same network as a Box policy on
  ``rli/FormationFlight-v0`` (8 episodes of ``--steps`` steps) without and with
  ``rli.patch_return.counterfactual_patch`` at layer 3 (every step also runs the counterfactual up to layer 3).

The summary names the best ``chunk_size`` and its cost in forward+backward passes and against the floor.
Run: ``python benchmarks/bench_patch_sweep.py [--n 200] [--repeats 5] [--steps 100] [--write FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import os

import gymnasium as gym
import numpy as np
import torch
from common import cpu_model, interleaved, reference_mlp

import rli
from rli.patch_return import counterfactual_patch
from rli.patch_sweep import patch_sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--write", type=str, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = reference_mlp()
    policy = rli.load_policy(net, action_space=gym.spaces.Discrete(4))
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(args.n, 28)).astype(np.float32)
    corrupt = rng.normal(size=(args.n, 28)).astype(np.float32)
    x, xc = torch.as_tensor(clean), torch.as_tensor(corrupt)
    width = 256

    def forward_backward() -> object:
        h = net[:4](x).detach().requires_grad_()
        out = net[4:](h)
        return torch.autograd.grad(out[:, 0].sum(), [h])

    def floor() -> object:
        with torch.no_grad():
            a, c = net[:4](x), net[:4](xc)
            masks = torch.eye(width, dtype=torch.bool)[:, None, :]
            stacked = torch.where(masks, c[None], a[None]).reshape(-1, width)
            return net[4:](stacked)

    runs = {"forward+backward": forward_backward, "hand-written stacked sweep (floor)": floor}
    for chunk in (2048, 8192, 32768, 131072):
        runs[f"patch_sweep chunk_size={chunk}"] = (
            lambda chunk=chunk: patch_sweep(policy, clean, corrupt, metric="logit", layers=[3], chunk_size=chunk))
    runs["patch_sweep screen='attribution', top=8"] = (
        lambda: patch_sweep(policy, clean, corrupt, metric="logit", layers=[3], screen="attribution", top=8))
    times, results = interleaved(runs, args.repeats)
    exact = results["patch_sweep chunk_size=32768"]
    reference = results["hand-written stacked sweep (floor)"].reshape(width, args.n, 4)  # type: ignore[attr-defined]
    chosen = net(x).argmax(1)
    with torch.no_grad():
        base = net(x)[torch.arange(args.n), chosen]
    expected = (reference[:, torch.arange(args.n), chosen] - base).mean(1).numpy()
    assert np.allclose(exact.effect, expected, atol=1e-5), "patch_sweep disagrees with the hand-written sweep"
    unit = min(times["forward+backward"])
    low = min(times["hand-written stacked sweep (floor)"])
    lines = [f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, 1 torch thread, torch "
             f"{torch.__version__}, n={args.n}, {width} sites", "",
             "| run | best (ms) | × forward+backward | × floor |", "|---|---|---|---|"]
    for name, values in times.items():
        best = min(values)
        lines.append(f"| {name} | {best * 1e3:.1f} | {best / unit:.1f} | {best / low:.2f} |")
    chunks = {name: min(values) for name, values in times.items() if "chunk_size" in name}
    choice = min(chunks, key=chunks.__getitem__)
    lines += ["", f"best chunk: {choice} = {chunks[choice] / unit:.0f}× the forward+backward pass, "
              f"{chunks[choice] / low:.2f}× the hand-written floor", ""]
    lines += _rollout_cost(net, args.steps, args.repeats)
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text + "\n")


def _rollout_cost(net: torch.nn.Module, steps: int, repeats: int) -> list[str]:
    """Seconds per rollout step with and without a counterfactual patch (the paired-return metric's treated run)."""
    import rli.envs  # registers rli/FormationFlight-v0

    policy = rli.load_policy(torch.nn.Sequential(*net, torch.nn.Tanh()), action_space=gym.spaces.Box(-1, 1, (4,)))
    env = "rli/FormationFlight-v0"
    swap = counterfactual_patch(policy, 3, lambda obs: rli.negate_sensors(obs, [12, 22, 23, 24, 25, 27]))
    runs = {"evaluate, no intervention": lambda: rli.evaluate(policy, env, 8, 0, max_steps=steps),
            "evaluate under counterfactual_patch at layer 3": lambda: rli.evaluate(policy, env, 8, 0, swap,
                                                                                   max_steps=steps)}
    times, _ = interleaved(runs, repeats)
    plain, patched = (min(values) for values in times.values())
    return [f"rollouts (8 episodes × {steps} steps, 8 envs): {plain / steps * 1e3:.2f} ms/step plain, "
            f"{patched / steps * 1e3:.2f} ms/step patched from the counterfactual = {patched / plain:.2f}× "
            "(one extra forward pass up to the site's layer, and the corrupt function, per step)"]


if __name__ == "__main__":
    main()
