"""Attribution cost relative to one forward + backward pass of the same batch.

The floor: one forward pass of the batch and one backward pass of the summed target outputs to the input
(``torch.autograd.grad``), hand-written, the least any gradient-based attribution can cost. Against it, on the
benchmarks' 28→256→256→128→4 Tanh MLP (1,000 rows) and a NatureCNN-style CnnPolicy on 3×36×36 uint8 frames
(200 rows), interleaved after a warm-up (best of the repeats):

* ``rli.attribution.attribute(method="saliency")`` (captum ``Saliency``);
* ``attribute(method="ig", n_steps=32)`` at several ``batch_size`` (rows per captum call), the best reported;
* captum's ``IntegratedGradients`` called directly on the whole batch (``internal_batch_size`` unset), the same
  network and inputs: what rli adds over captum;
* the ideal IG: ``n_steps`` forward+backward passes of the batch in one expanded batch (hand-written), the floor
  for IG.

Run: ``python benchmarks/bench_attribution.py [--repeats 3] [--write FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import os

import numpy as np
import torch
from captum.attr import IntegratedGradients
from common import cpu_model, interleaved, reference_mlp

import rli
from rli.attribution import attribute

N_STEPS = 32


def _floor(forward, x: torch.Tensor, target: torch.Tensor) -> None:
    x = x.clone().requires_grad_()
    out = forward(x).gather(1, target[:, None]).sum()
    torch.autograd.grad(out, x)


def _ideal_ig(forward, x: torch.Tensor, target: torch.Tensor) -> None:
    alphas = torch.linspace(0, 1, N_STEPS)
    path = (alphas.view(-1, *[1] * x.ndim) * x[None]).reshape(-1, *x.shape[1:]).requires_grad_()
    out = forward(path).gather(1, target.repeat(N_STEPS)[:, None]).sum()
    torch.autograd.grad(out, path)


def _cnn_policy() -> rli.Policy:
    import gymnasium as gym
    from stable_baselines3 import PPO

    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (3, 36, 36), np.uint8)
        action_space = gym.spaces.Discrete(4)

    torch.manual_seed(0)
    model = PPO("CnnPolicy", Frames(), n_steps=8, batch_size=8, seed=0, device="cpu",
                policy_kwargs={"features_extractor_kwargs": {"features_dim": 64}})
    return rli.load_policy(model)


def _case(name: str, policy: rli.Policy, forward, raw: np.ndarray, x: torch.Tensor, repeats: int) -> list[str]:
    with torch.no_grad():
        target = forward(x).argmax(dim=1)
    runs = {"floor: forward+backward": lambda: _floor(forward, x, target),
            "attribute saliency": lambda: attribute(policy, raw, method="saliency"),
            f"ideal IG ({N_STEPS} passes in one batch)": lambda: _ideal_ig(forward, x, target),
            "captum IntegratedGradients direct": lambda: IntegratedGradients(forward).attribute(
                x, target=target, n_steps=N_STEPS)}
    for size in (16, 64, 256, 1024):
        if size <= len(raw):
            runs[f"attribute ig batch_size={size}"] = lambda size=size: attribute(
                policy, raw, method="ig", n_steps=N_STEPS, batch_size=size)
    times, _ = interleaved(runs, repeats)
    best = {key: min(value) for key, value in times.items()}
    floor = best["floor: forward+backward"]
    lines = [f"### {name} ({len(raw)} rows)", "", "| run | best (ms) | × forward+backward |", "|---|---|---|"]
    lines += [f"| {key} | {1e3 * value:.1f} | {value / floor:.1f} |" for key, value in best.items()]
    ig = {key: value for key, value in best.items() if key.startswith("attribute ig")}
    choice = min(ig, key=ig.__getitem__)
    ideal = best[f"ideal IG ({N_STEPS} passes in one batch)"]
    print("\n".join(lines), flush=True)
    lines += ["", f"best IG chunk: {choice} = {ig[choice] / floor:.1f}× the forward+backward pass, "
              f"{ig[choice] / ideal:.2f}× the ideal IG, {ig[choice] / best['captum IntegratedGradients direct']:.2f}× "
              "captum called directly", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=str, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mlp = reference_mlp()
    import gymnasium as gym

    mlp_policy = rli.load_policy(mlp, action_space=gym.spaces.Discrete(4))  # "action": the greedy logit
    raw = np.random.default_rng(0).normal(size=(1000, 28)).astype(np.float32)
    lines = [f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, 1 torch thread, torch "
             f"{torch.__version__}, IG n_steps={N_STEPS}", ""]
    lines += _case("MLP 28→256→256→128→4 Tanh", mlp_policy, mlp, raw, torch.as_tensor(raw), args.repeats)
    cnn = _cnn_policy()
    module = cnn.module
    frames = np.random.default_rng(1).integers(0, 256, size=(200, 3, 36, 36), dtype=np.uint8)

    def cnn_forward(t: torch.Tensor) -> torch.Tensor:
        return module.action_net(module.mlp_extractor.forward_actor(module.extract_features(t)))

    lines += _case("SB3 CnnPolicy 3×36×36", cnn, cnn_forward, frames, torch.as_tensor(frames, dtype=torch.float32),
                   args.repeats)
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
