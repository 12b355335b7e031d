"""Distributed alignment search (DAS): is there a k-dimensional subspace at a layer that implements a variable?

Geiger et al.'s DAS (the idea behind pyvene's ``RotatedSpaceIntervention``): learn an
orthonormal k-frame ``W`` (k × d, rows orthonormal; the first k rows of a rotation,
``torch.nn.utils.parametrizations.orthogonal``) such that the *interchange intervention*
``h_base ← h_base + Wᵀ W (h_source − h_base)`` (the k rotated coordinates of the base
activation replaced by the source's) makes the policy output what a high-level causal
model says the variable, set to its value on the source, implies for the base. The
policy is frozen: only ``W`` is trained.

``pairs`` is ``(base_obs, source_obs, target)``: arrays (or ObsSets) of the same length
and ``target`` an integer array, ``target[i]`` the action the policy should take on
``base_obs[i]`` once the variable is set to its value on ``source_obs[i]``. The score is
the *interchange intervention accuracy* (IIA): the share of held-out pairs whose greedy
action under the interchange equals ``target``, with a CI, against random k-frames
(``controls=True``): the same interchange through Haar-random rotations. A subspace that
only beats chance is not evidence; one that beats the random-rotation control is. Read
``p_value`` as "this learned subspace does better than a random one on held-out pairs";
it is not a proof that the network uses the variable (an interchange can also create
behaviour the network never shows: Makelov et al., 2023, "interpretability illusions"),
so prefer layers and variables where the control is well below the learned IIA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import optimize
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from torch import nn
from torch.nn.utils import parametrizations

from rli import checks, stats
from rli.capture import capture
from rli.errors import RliError
from rli.observations import ObsSet
from rli.patch_sweep import head_under_edit
from rli.policy import LayerSpec, Policy
from rli.recurrent import RecurrentState
from rli.tensors import to_numpy
from rli.threads import one_torch_thread


@dataclass(frozen=True)
class DASResult:
    """Held-out interchange intervention accuracy of a learned k-dimensional subspace, with its controls.

    ``iia`` and ``ci``: held-out IIA and its 95% t-interval (over held-out groups when
    grouped); ``train_iia`` the same on the training pairs; ``control_iia`` the held-out
    IIA of each random rotation, ``control`` their mean; ``p_value`` the one-sided paired
    t-test (over held-out pairs or groups) of "learned IIA > mean random-rotation IIA";
    ``basis`` (d × k, orthonormal columns) the learned subspace at ``layer``.
    """

    layer: str
    k: int
    iia: float
    ci: tuple[float, float]
    train_iia: float
    control_iia: np.ndarray
    control: float
    p_value: float | None
    basis: np.ndarray
    n_train: int
    n_test: int
    epochs: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able; the basis left out)."""
        return {"layer": self.layer, "k": self.k, "iia": self.iia, "ci": list(self.ci), "train_iia": self.train_iia,
                "control_iia": self.control_iia.tolist(), "control": self.control, "p_value": self.p_value,
                "n_train": self.n_train, "n_test": self.n_test, "epochs": self.epochs, "seed": self.seed}

    def __str__(self) -> str:
        control = (f"; random rotations {self.control:.3f} ({len(self.control_iia)} seeds), p = {self.p_value:.3g}"
                   if len(self.control_iia) else "")
        return (f"DAS at {self.layer}, k={self.k}: held-out IIA {self.iia:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}] "
                f"on {self.n_test} pairs (train {self.train_iia:.3f}){control}")


class _Frame(nn.Module):
    """k orthonormal rows in R^d (``torch.nn.utils.parametrizations.orthogonal``)."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.map = parametrizations.orthogonal(nn.Linear(d, k, bias=False, dtype=torch.float64))

    @property
    def weight(self) -> torch.Tensor:
        weight = self.map.weight
        assert isinstance(weight, torch.Tensor)
        return weight


def _interchange(weight: torch.Tensor, source: torch.Tensor) -> Any:
    """``rows ↦ rows + Wᵀ W (source − rows)`` (the k rotated coordinates taken from the source rows)."""

    def edit(rows: torch.Tensor) -> torch.Tensor:
        wide = rows.to(torch.float64)
        return (wide + ((source - wide) @ weight.T) @ weight).to(rows.dtype)
    return edit


def _pairs(pairs: Any) -> tuple[Any, Any, np.ndarray]:
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 3:
        raise RliError("pairs must be (base_obs, source_obs, target): two observation batches of the same length and "
                       "an integer array, target[i] = the action the base should take with the variable set from "
                       "the source")
    base, source, target = pairs
    n = len(base)
    arr = np.asarray(target)
    if len(source) != n or arr.shape != (n,):
        raise RliError(f"pairs: base_obs has {n} rows, source_obs {len(source)} and target shape {arr.shape}; "
                       f"give {n} of each (target one action index per pair)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise RliError(f"pairs: target must hold integer action indices (the counterfactual action), not {arr.dtype}")
    return base, source, arr.astype(np.int64)


def _split(n: int, holdout: float, groups: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    splitter = (ShuffleSplit(n_splits=1, test_size=holdout, random_state=seed) if groups is None
                else GroupShuffleSplit(n_splits=1, test_size=holdout, random_state=seed))
    train, test = next(splitter.split(np.zeros(n), groups=groups))
    if groups is not None and min(len(np.unique(groups[train])), len(np.unique(groups[test]))) < 2:
        raise RliError(f"holdout={holdout} leaves {len(np.unique(groups[test]))} held-out and "
                       f"{len(np.unique(groups[train]))} training groups; an interval over groups needs at least 2 on "
                       "each side: give more groups (episodes)")
    if len(train) < 2 or len(test) < 2:
        raise RliError(f"holdout={holdout} leaves {len(train)} training and {len(test)} held-out pairs; "
                       "give more pairs (or groups) or another holdout")
    return np.sort(train), np.sort(test)


def _random_frame(d: int, k: int, rng: np.random.Generator) -> torch.Tensor:
    q, r = np.linalg.qr(rng.normal(size=(d, k)))
    return torch.as_tensor((q * np.sign(np.diag(r))).T)  # Haar-distributed k-frame


def _scores(correct: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    if groups is None:
        return correct
    return np.array([correct[groups == g].mean() for g in np.unique(groups)])


def das(policy: Policy, layer: LayerSpec, pairs: Any, k: int, *, epochs: int = 100, lr: float | None = None,
        seed: int = 0, holdout: float = 0.3, controls: bool = True, n_controls: int = 5, groups: Any = None,
        recurrent_state: RecurrentState | None = None) -> DASResult:
    """Learn a k-dimensional subspace at ``layer`` whose interchange gives the counterfactual actions of ``pairs``.

    Full-batch L-BFGS (scipy, at most ``epochs`` iterations; or ``epochs`` Adam steps of
    size ``lr`` when ``lr`` is given) on the cross-entropy of the action head under the interchange, on
    the training pairs (``1 − holdout`` of them; split by ``groups``, an array with one
    group id per pair, when given, so pairs of one episode stay on one side), seeded by
    ``seed``. IIA is reported on the held-out pairs, with ``n_controls`` random
    rotations as the control when ``controls``. The policy's parameters are frozen
    (they get no gradient and come back bit-identical). A recurrent policy runs both
    observation sets from the hidden states ``recurrent_state`` chooses (as in
    :func:`rli.capture`).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, gymnasium as gym, rli
        >>> from rli.das import das
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> with torch.no_grad():  # actor.0 holds x0 on its first unit; the head acts on its sign
        ...     _ = net[0].weight.copy_(torch.eye(2)); _ = net[0].bias.zero_()
        ...     _ = net[1].weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]])); _ = net[1].bias.zero_()
        >>> policy = rli.load_policy(net, action_space=gym.spaces.Discrete(2))
        >>> rng = np.random.default_rng(0)
        >>> base, source = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
        >>> result = das(policy, 0, (base, source, (source[:, 0] > 0).astype(int)), k=1, epochs=60, n_controls=2)
        >>> result.iia > 0.95, result.iia > result.control
        (True, True)
    """
    checks.policy(policy)
    target = policy.layer(layer)
    if not target.width:
        raise RliError(f"layer {target.name!r} does not run when the policy acts; see policy.layers")
    d = int(target.width)
    k = checks.count(k, "k", maximum=d - 1, hint=f" (the subspace's dimension, below the layer width {d})")
    epochs = checks.count(epochs, "epochs")
    if lr is not None and not checks.real(lr, "lr") > 0:
        raise RliError(f"lr must be positive (Adam's step size), or None for L-BFGS, not {lr!r}")
    seed = checks.seed(seed)
    holdout = checks.real(holdout, "holdout")
    if not 0 < holdout < 1:
        raise RliError(f"holdout is the share of pairs held out, between 0 and 1 (e.g. 0.3), not {holdout}")
    controls = checks.flag(controls, "controls")
    n_controls = checks.count(n_controls, "n_controls")
    base, source, wanted = _pairs(pairs)
    n = len(wanted)
    head = policy.actor_layers[-1]
    if wanted.min() < 0 or head.width is None or wanted.max() >= head.width:
        raise RliError(f"pairs: target holds action indices from {wanted.min()} to {wanted.max()} but the action head "
                       f"{head.name} has {head.width} outputs")
    group_ids = None if groups is None else np.asarray(groups)
    if group_ids is not None and group_ids.shape != (n,):
        raise RliError(f"groups must give one group id per pair ({n}), got shape {group_ids.shape}")
    train, test = _split(n, holdout, group_ids, seed)
    source_acts = torch.as_tensor(capture(policy, source, layers=[target], recurrent_state=recurrent_state)
                                  [target.name], dtype=torch.float64, device=policy.device)

    def rows(obs: Any, index: np.ndarray) -> Any:
        return obs[index] if isinstance(obs, ObsSet) else np.asarray(obs)[index]

    base_train, base_test = rows(base, train), rows(base, test)

    def logits(weight: torch.Tensor, index: np.ndarray, obs: Any) -> torch.Tensor:
        return head_under_edit(policy, target, obs, _interchange(weight, source_acts[index]),
                               recurrent_state=recurrent_state)

    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        frame = _Frame(d, k).to(policy.device)
    finally:
        torch.random.set_rng_state(torch_state)
    (param,) = list(frame.parameters())
    labels = torch.as_tensor(wanted[train], device=policy.device)

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            param.copy_(torch.as_tensor(flat.reshape(param.shape), dtype=param.dtype))
        loss = nn.functional.cross_entropy(logits(frame.weight, train, base_train).to(torch.float64), labels)
        (grad,) = torch.autograd.grad(loss, [param])
        return float(loss.detach()), to_numpy(grad).ravel().astype(np.float64)

    with one_torch_thread():  # small full-batch steps: extra threads only spin-wait
        flat = to_numpy(param).ravel().astype(np.float64)
        if lr is None:
            flat = optimize.minimize(loss_and_grad, flat, jac=True, method="L-BFGS-B", options={"maxiter": epochs}).x
        else:
            from torch.optim import Adam  # imported here: its first import costs seconds

            optimizer = Adam([param], lr=lr)
            for _ in range(epochs):
                _, grad = loss_and_grad(to_numpy(param).ravel())
                param.grad = torch.as_tensor(grad.reshape(param.shape), dtype=param.dtype, device=param.device)
                optimizer.step()
            flat = to_numpy(param).ravel()
        loss_and_grad(flat)
        with torch.no_grad():
            weight = frame.weight.detach().clone()

    def correct(w: torch.Tensor, index: np.ndarray, obs: Any) -> np.ndarray:
        with torch.no_grad():
            return (to_numpy(logits(w, index, obs).argmax(dim=1)) == wanted[index]).astype(np.float64)

    test_correct = correct(weight, test, base_test)
    test_groups = None if group_ids is None else group_ids[test]
    scores = _scores(test_correct, test_groups)
    iia = float(test_correct.mean())
    low, high = (iia, iia) if np.ptp(scores) == 0 else stats.t_interval(scores)
    ci = (max(0.0, low), min(1.0, high))  # an accuracy: the t-interval clipped to [0, 1]
    control_iia = np.zeros(0)
    p_value = None
    if controls:
        rng = np.random.default_rng(seed)
        control_correct = np.stack([correct(_random_frame(d, k, rng).to(policy.device), test, base_test)
                                    for _ in range(n_controls)])
        control_iia = control_correct.mean(axis=1)
        diff = scores - _scores(control_correct.mean(axis=0), test_groups)
        t, p_two = stats.paired_ttest(diff, np.zeros_like(diff))
        p_value = p_two / 2 if t > 0 else 1 - p_two / 2
    return DASResult(layer=target.name, k=k, iia=iia, ci=(float(ci[0]), float(ci[1])),
                     train_iia=float(correct(weight, train, base_train).mean()), control_iia=control_iia,
                     control=float(control_iia.mean()) if len(control_iia) else float("nan"), p_value=p_value,
                     basis=to_numpy(weight.T), n_train=len(train), n_test=len(test), epochs=epochs, seed=seed)
