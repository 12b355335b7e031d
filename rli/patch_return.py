"""Paired return of patching chosen sites from the counterfactual of the *current* observation.

:func:`rli.patch_sweep.patch_sweep` measures per-observation metrics on fixed clean /
corrupt pairs. What a site does to *behaviour over an episode* needs the patch inside
the rollout: at every step, the policy acts on observation ``o`` with the site's
activations replaced by those the network computes on ``corrupt(o)``, the
counterfactual of that same observation (``corrupt`` maps a batch of observations,
as the environment gives them, before the policy's normaliser, to their
counterfactuals: ``lambda o: rli.negate_sensors(o, [0, 1])``).

:func:`counterfactual_patch` builds that edit as a context manager that composes and
re-enters like :func:`rli.patch` (hooks only while active, parameters untouched);
:func:`patch_return` runs it with :func:`rli.compare` for each chosen site (same episode
seeds, one shared baseline), and Holm-corrects the sites' paired p-values.

Each policy forward pass then costs a second, partial one (up to the site's layer) on the
counterfactual observations. The counterfactual run is the network as it is without
other counterfactual patches (static interventions active in the same block apply to it).
Returns are compared exactly, with no rounding tolerance: with ``corrupt`` the identity
the patched forward pass computes the very same numbers, so every patched return equals
the unpatched one, bit for bit (tested).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rli import checks, stats
from rli import policy as policy_module
from rli.capture import capture_prepared
from rli.comparison import Comparison, compare
from rli.errors import RliError
from rli.interventions import Intervention
from rli.patch_sweep import PatchSweepResult, site_mask
from rli.policy import Layer, Policy
from rli.rollout import EnvSpec, EvalResult, evaluate

Corrupt = Callable[[np.ndarray], Any]
_COMPUTING = threading.local()  # depth > 0 while a counterfactual forward pass runs: every such patch passes through


def _computing() -> bool:
    return bool(getattr(_COMPUTING, "depth", 0))


class _CounterfactualEdit:
    """Coordinates ``mask`` of the layer's rows replaced by the activations stored for this forward pass."""

    def __init__(self, mask: np.ndarray, site: str) -> None:
        self.mask = torch.as_tensor(mask)
        self.site = site
        self.pending: np.ndarray | None = None

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if _computing():
            return rows
        source, self.pending = self.pending, None
        if source is None:
            raise RliError(f"the counterfactual patch at {self.site} ran in a forward pass it computed no counterfactual "
                           "for: it works inside policy.act / rli.evaluate / rli.compare of the policy it was built "
                           "from (not inside rli.capture, nor on another Policy object); build it from the policy you "
                           "run, or use rli.patch with fixed source observations")
        if source.shape[0] != rows.shape[0]:
            raise RliError(f"the counterfactual patch at {self.site} holds {source.shape[0]} rows but the layer ran on "
                           f"{rows.shape[0]}")
        mask = self.mask.to(rows.device)
        return torch.where(mask, torch.as_tensor(source, dtype=rows.dtype, device=rows.device), rows)


class CounterfactualPatch:
    """While active, ``site``'s activations on each batch come from the same network run on ``corrupt(batch)``.

    Built by :func:`counterfactual_patch`. A context manager like the other rli
    interventions: ``with a, b:`` composes, it can be entered again and again (not
    while active), hooks and the observation tap exist only inside the block (also
    after an exception or Ctrl-C), parameters are never touched. ``describe()`` and
    ``to_dict()`` say what it does.
    """

    def __init__(self, policy: Policy, layer: Layer, mask: np.ndarray, site: str, corrupt: Corrupt,
                 label: str) -> None:
        self.policy = policy
        self.layer = layer
        self.site = site
        self._corrupt = corrupt
        self._label = label
        self._edit = _CounterfactualEdit(mask, site)
        self._width = int(mask.sum())
        self._description = f"patch {site} from the counterfactual ({label}) of each observation"
        self._intervention = Intervention(policy, layer, "counterfactual_patch", self._edit, self._description,
                                          {"site": site, "coordinates": self._width, "corrupt": label})

    @property
    def label(self) -> str:
        """How ``corrupt`` is named in descriptions."""
        return self._label

    @property
    def active(self) -> bool:
        """Whether the patch is in place (inside a ``with`` block)."""
        return self._intervention.active

    def describe(self) -> str:
        """One line saying what the patch does."""
        return self._description

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for reports and JSON)."""
        return self._intervention.to_dict()

    def __repr__(self) -> str:
        return f"CounterfactualPatch({self._description}{', active' if self.active else ''})"

    def __str__(self) -> str:
        return self._description

    def _tap(self, policy: Policy, obs: np.ndarray) -> None:
        if policy is not self.policy or _computing():
            return
        counterfactual = self._corrupt(obs)
        arr = np.asarray(counterfactual.obs if hasattr(counterfactual, "obs") else counterfactual)
        if arr.shape != obs.shape:
            raise RliError(f"corrupt returned shape {arr.shape} for observations of shape {obs.shape}; it must map a "
                           "batch of observations to a batch of counterfactuals of the same shape")
        _COMPUTING.depth = getattr(_COMPUTING, "depth", 0) + 1
        try:
            prepared = self.policy.prepare_obs(arr)  # validated as any observation (shape, NaN) before it runs
            acts = capture_prepared(self.policy, prepared, [self.layer], chunk_size=len(arr))[self.layer.name]
        finally:
            _COMPUTING.depth -= 1
        self._edit.pending = acts

    def __enter__(self) -> CounterfactualPatch:
        self._intervention.__enter__()
        policy_module.observation_taps.append(self._tap)
        return self

    def __exit__(self, *exc_info: object) -> None:
        taps = policy_module.observation_taps
        for i, tap in enumerate(taps):
            if tap == self._tap:
                del taps[i]
                break
        self._edit.pending = None
        self._intervention.__exit__(*exc_info)


def counterfactual_patch(policy: Policy, site: Any, corrupt: Corrupt, *, label: str | None = None) -> CounterfactualPatch:
    """Patch ``site`` from the counterfactual ``corrupt(obs)`` of every observation the policy acts on.

    ``site`` is a layer (index, alias, dotted name: the whole layer) or a site name of
    :attr:`rli.PatchSweepResult.sites` (``"actor.3[7]"``, ``"0[c2]"``, ``"0[@1,2]"``).
    ``corrupt`` maps an array of observations ``(n, *obs_shape)``, as the environment
    gives them (before the policy's normaliser; rows of :func:`rli.evaluate` batches
    include zero padding rows), to counterfactuals of the same shape. Applies to
    :meth:`rli.Policy.act` and rollouts (:func:`rli.evaluate`, :func:`rli.compare`) of
    feed-forward policies; ``label`` names ``corrupt`` in descriptions.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, gymnasium as gym, rli
        >>> from rli.patch_return import counterfactual_patch
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)),
        ...                          action_space=gym.spaces.Discrete(2))
        >>> x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
        >>> with counterfactual_patch(policy, 1, lambda o: -o, label="negated") as swap:
        ...     patched = policy.act(x)
        >>> swap.describe(), bool(np.array_equal(patched, policy.act(-x)))
        ('patch actor.1 from the counterfactual (negated) of each observation', True)
    """
    checks.policy(policy)
    if not callable(corrupt):
        raise RliError(f"corrupt must be a function obs -> counterfactual obs (e.g. lambda o: rli.negate_sensors(o, "
                       f"[0])), not {type(corrupt).__name__}")
    if policy.is_recurrent:
        raise RliError("counterfactual_patch runs on feed-forward policies; a recurrent policy's counterfactual would "
                       "need the hidden state of the counterfactual episode: patch it with rli.patch from recorded "
                       "observations instead")
    if label is not None and not isinstance(label, str):
        raise RliError(f"label must be a string naming corrupt, not {label!r}")
    layer, mask, name = site_mask(policy, site)
    if layer.index is None:
        raise RliError(f"site {name} is not in the actor trunk, so it does not run when the policy acts; patch an "
                       "actor layer (policy.actor_layers)")
    return CounterfactualPatch(policy, layer, mask, name, corrupt,
                               label or getattr(corrupt, "__name__", "corrupt").replace("<lambda>", "corrupt"))


@dataclass(frozen=True)
class PatchReturnResult:
    """Paired returns with each site patched from the counterfactual, against one shared baseline.

    ``drop[s]`` is ``mean(baseline − patched)`` for site ``s`` (positive: the patch costs
    return), ``ci`` its paired Student-t interval, ``p_value`` the paired t-test and
    ``p_adjusted`` its ``correction`` across the sites; ``significant`` is
    ``p_adjusted < alpha``. ``comparisons`` holds each site's :class:`rli.Comparison`.
    """

    sites: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    drop: np.ndarray
    ci: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    significant: np.ndarray
    correction: str
    alpha: float
    corrupt: str
    baseline: EvalResult

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"corrupt": self.corrupt, "correction": self.correction, "alpha": self.alpha,
                "env": self.baseline.env, "seeds": self.baseline.seeds.tolist(),
                "baseline_returns": self.baseline.returns.tolist(),
                "sites": [{"site": s, "drop": float(d), "ci": [float(c[0]), float(c[1])], "p_value": float(p),
                           "p_adjusted": float(q), "significant": bool(g),
                           "patched_returns": cmp.treated.returns.tolist()}
                          for s, d, c, p, q, g, cmp in zip(self.sites, self.drop, self.ci, self.p_value,
                                                           self.p_adjusted, self.significant, self.comparisons)]}

    def __str__(self) -> str:
        base = self.baseline
        lines = [f"return with sites patched from the counterfactual ({self.corrupt}) on {base.env}, "
                 f"{len(base.seeds)} paired episodes (seeds {base.seeds[0]}..{base.seeds[-1]}), baseline mean "
                 f"{base.returns.mean():.4g}; {self.correction} over {len(self.sites)} sites"]
        for i, name in enumerate(self.sites):
            lines.append(f"  {name}: drop {self.drop[i]:+.4g} [{self.ci[i, 0]:+.4g}, {self.ci[i, 1]:+.4g}], "
                         f"p_adj={self.p_adjusted[i]:.3g}{' *' if self.significant[i] else ''}")
        return "\n".join(lines)


def patch_return(policy: Policy, env: EnvSpec, corrupt: Corrupt, sites: PatchSweepResult | Sequence[Any] | Any, *,
                 episodes: int = 10, seed: int = 0, top: int = 3, correction: str = "holm", alpha: float = 0.05,
                 label: str | None = None, baseline: EvalResult | None = None,
                 **evaluate_kwargs: Any) -> PatchReturnResult:
    """Paired return (:func:`rli.compare`) with each of ``sites`` patched from ``corrupt`` of the current observation.

    ``sites`` is a list of sites (see :func:`counterfactual_patch`), one site, or a
    :class:`~rli.PatchSweepResult` (its ``top`` sites of largest effect). Every site runs
    the same ``episodes`` seeds (``seed``, ``seed + 1``, ...) against one baseline
    evaluation (pass ``baseline=`` to reuse one); the paired p-values are corrected
    across the sites (``correction``, Holm by default). ``evaluate_kwargs`` go to
    :func:`rli.evaluate` (``n_envs``, ``max_steps``, ...).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> from rli.patch_return import patch_return
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> same = patch_return(policy, "CartPole-v1", lambda o: o, ["actor.1[0]", 2], episodes=3, seed=0)
        >>> same.sites, same.drop.tolist(), same.significant.tolist()
        (('actor.1[0]', 'actor.2'), [0.0, 0.0], [False, False])
    """
    checks.policy(policy)
    correction = stats.check_correction(correction)
    alpha = stats.check_alpha(alpha)
    if isinstance(sites, PatchSweepResult):
        chosen: list[Any] = list(sites.top(checks.count(top, "top")))
    elif isinstance(sites, (list, tuple)):
        chosen = list(sites)
    else:
        chosen = [sites]
    if not chosen:
        raise RliError("sites is empty; give sites to patch (e.g. ['actor.3[7]', 'actor.5']) or a patch sweep result")
    patches = [counterfactual_patch(policy, site, corrupt, label=label) for site in chosen]
    names = [patch.site for patch in patches]
    if len(set(names)) != len(names):
        raise RliError(f"sites lists a site twice ({names}); give each once")
    if baseline is None:
        baseline = evaluate(policy, env, episodes, seed, **evaluate_kwargs)
    results = tuple(compare(policy, env, patch, episodes, seed, baseline=baseline, **evaluate_kwargs)
                    for patch in patches)
    p = np.array([r.p_value for r in results])
    adjusted = stats.adjust(p, correction)
    return PatchReturnResult(
        sites=tuple(names), comparisons=results, drop=np.array([r.drop for r in results]),
        ci=np.array([r.ci for r in results], dtype=float).reshape(-1, 2), p_value=p, p_adjusted=adjusted,
        significant=adjusted < alpha, correction=correction, alpha=alpha, corrupt=patches[0].label,
        baseline=baseline)
