"""Cost of an activation-patching sweep: every unit of one layer of a 28→256→256→128→4 Tanh MLP, on n rows.

Times (best of interleaved repeats, after a warm-up, one torch thread as patch_sweep uses):

* one forward + backward pass of the batch (the unit of cost of attribution patching);
* a hand-written exact sweep, the floor: the 256 patched copies of the batch stacked into one
  ``torch.where`` at layer 3 and one forward pass of the stacked rows (no rli);
* ``patch_sweep(..., over=("layer", "unit"), layers=[3])`` at several ``chunk_size`` (rows per
  stacked forward pass);
* ``patch_sweep(..., screen="attribution", top=8)``: the gradient screen and 8 exact patches.

Run: ``python benchmarks/bench_patch_sweep.py [--n 200] [--repeats 5]``.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from common import cpu_model, interleaved, reference_mlp

import rli
from rli.patch_sweep import patch_sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
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
    print(f"{cpu_model()}, torch {torch.__version__}, n={args.n}, {width} sites")
    print("| run | best (ms) | × forward+backward | × floor |")
    print("|---|---|---|---|")
    for name, values in times.items():
        best = min(values)
        print(f"| {name} | {best * 1e3:.1f} | {best / unit:.1f} | {best / low:.2f} |")


if __name__ == "__main__":
    main()
