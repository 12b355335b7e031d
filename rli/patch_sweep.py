"""Activation-patching sweeps: which sites (layer × unit, channel or position) carry a behaviour.

For every site, the clean observations run with that site's activations replaced by
those of the paired corrupt observations (row ``i`` of ``clean`` with row ``i`` of
``corrupt``), and a behaviour metric is compared, row by row, with the clean run:

==============================  ==========================================================
``metric="action_agreement"``   1 when the patched action equals the clean action (0 else)
``metric="logit"``              the action head's output at the clean (greedy) action
``metric="prob"``               the softmax probability of the clean action
``metric="value"``              the critic's output
a callable ``f(head) -> (n,)``  any per-row number from the action head's outputs (n, a)
==============================  ==========================================================

A site's ``effect`` is the mean over rows of ``metric(patched) − metric(clean)``, with
a Student-t interval and a two-sided p-value over rows; when rows are grouped (by
episode: rows of one episode are not independent) the unit is the group, and the
effect, interval and p-value are those of the per-group means. p-values are Holm-corrected
across the sites (:func:`rli.stats.adjust`). A row's change within the float noise floor
(:func:`rounding_tolerance`: 64 float32 epsilons of the metric's scale) counts as exactly 0,
so activations that differ only by rounding are never an effect. Patches are built with
:class:`rli.Intervention` (hooks exist only while a batch runs) and many sites run in
one stacked forward pass. ``screen="attribution"`` ranks all sites first by attribution
patching (Nanda's gradient approximation ``∂metric/∂h · (h_corrupt − h_clean)``, one
backward pass) and patches exactly only the ``top`` of them; the result reports the
Spearman rank agreement between the estimate and the exact effect on those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats as st

from rli import checks, recurrent, stats
from rli.capture import capture
from rli.errors import RliError
from rli.interventions import Intervention
from rli.network import first_tensor
from rli.observations import ObsSet
from rli.policy import Layer, LayerSpec, Policy
from rli.recurrent import RecurrentState
from rli.tensors import to_numpy
from rli.threads import one_torch_thread

METRICS = ("action_agreement", "logit", "prob", "value")
_OVER = ("layer", "unit", "channel", "position")
Metric = str | Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PatchSweepResult:
    """Per-site patching effects with intervals and multiplicity-corrected significance.

    ``sites`` names each site (``"actor.1[3]"``: unit 3 of actor.1; ``"actor.1"``: the
    whole layer; ``"0[c2]"``: channel 2; ``"0[@1,2]"``: position (1, 2)); ``layer`` and
    ``index`` say where (``index`` −1 for a whole layer). ``effect[s]`` is the mean
    change of the metric when site ``s`` is patched (NaN for sites screened out), ``ci``
    its interval, ``p_value`` / ``p_adjusted`` the raw and corrected p-values (over the
    sites patched), ``significant`` ``p_adjusted < alpha``. ``total_effect`` is the
    metric change of running the corrupt observations themselves, so
    ``fraction = effect / total_effect`` is the share of it one site restores.
    ``screen_score`` holds the attribution-patching estimates of every site when
    screened, and ``spearman`` their rank agreement with the exact effects patched.
    """

    metric: str
    over: tuple[str, ...]
    sites: tuple[str, ...]
    layer: tuple[str, ...]
    index: np.ndarray
    effect: np.ndarray
    ci: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    significant: np.ndarray
    total_effect: float
    total_ci: tuple[float, float]
    n: int
    n_groups: int
    correction: str
    alpha: float
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    screen_score: np.ndarray | None = None
    spearman: float | None = None

    @property
    def patched(self) -> np.ndarray:
        """Indices of the sites that were patched exactly (all, unless screened)."""
        return np.flatnonzero(~np.isnan(self.effect))

    @property
    def fraction(self) -> np.ndarray:
        """``effect / total_effect`` per site (NaN when the corrupt run changes nothing)."""
        if self.total_effect == 0:
            return np.full_like(self.effect, np.nan)
        return self.effect / self.total_effect

    def top(self, k: int = 5) -> list[str]:
        """The ``k`` patched sites of largest absolute effect, largest first."""
        done = self.patched
        order = done[np.argsort(-np.abs(self.effect[done]), kind="stable")]
        return [self.sites[i] for i in order[:checks.count(k, "k")]]

    def layer_grid(self, layer: str) -> np.ndarray:
        """Effects of one layer's sites in the layer's own shape (units: (d,); channels (C,); positions (H, W))."""
        rows = [i for i, name in enumerate(self.layer) if name == layer]
        if not rows:
            raise RliError(f"no site of layer {layer!r} in this sweep; its layers are {sorted(set(self.layer))}")
        values = self.effect[rows]
        shape = self.shapes.get(layer)
        return values.reshape(shape) if shape is not None and int(np.prod(shape)) == values.size else values

    def heatmap(self, **kwargs: Any) -> Any:
        """Heat map of the effects (a matplotlib Figure); see :func:`rli.patch_plots.patch_heatmap`."""
        from rli.patch_plots import patch_heatmap

        return patch_heatmap(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able; NaN for sites not patched)."""
        return {"metric": self.metric, "over": list(self.over), "n": self.n, "n_groups": self.n_groups,
                "correction": self.correction, "alpha": self.alpha, "total_effect": self.total_effect,
                "total_ci": list(self.total_ci), "spearman": self.spearman,
                "sites": [{"site": s, "layer": la, "index": int(i), "effect": float(e), "ci": [float(c[0]), float(c[1])],
                           "p_value": float(p), "p_adjusted": float(q), "significant": bool(g),
                           **({} if self.screen_score is None else {"screen": float(self.screen_score[k])})}
                          for k, (s, la, i, e, c, p, q, g) in enumerate(zip(
                              self.sites, self.layer, self.index, self.effect, self.ci, self.p_value,
                              self.p_adjusted, self.significant))]}

    def __str__(self) -> str:
        head = (f"patch sweep ({self.metric}, over {'×'.join(self.over)}): {len(self.patched)} of {len(self.sites)} "
                f"sites patched on {self.n} rows ({self.n_groups} groups); corrupt run changes the metric by "
                f"{self.total_effect:+.4g} [{self.total_ci[0]:+.4g}, {self.total_ci[1]:+.4g}]")
        if self.spearman is not None:
            head += f"; screen vs exact Spearman {self.spearman:.3f}"
        lines = [head]
        for name in self.top(5):
            i = self.sites.index(name)
            lines.append(f"  {name}: {self.effect[i]:+.4g} [{self.ci[i, 0]:+.4g}, {self.ci[i, 1]:+.4g}], "
                         f"p_adj={self.p_adjusted[i]:.3g}{' *' if self.significant[i] else ''}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ sites
@dataclass(frozen=True)
class _LayerSites:
    layer: Layer
    names: list[str]
    index: np.ndarray  # per site: -1 (whole layer) or its index along the swept axis
    masks: np.ndarray  # (sites, width) bool: which flattened coordinates each site patches
    shape: tuple[int, ...]


def _where(layer: Layer) -> str:
    return layer.aliases[0] if layer.aliases else layer.name


def _over(over: Any) -> tuple[str, ...]:
    parts = (over,) if isinstance(over, str) else tuple(over) if isinstance(over, (tuple, list)) else None
    if parts and parts[0] != "layer":
        parts = ("layer", *parts)
    if not parts or len(parts) > 2 or any(p not in _OVER for p in parts) or "layer" in parts[1:]:
        raise RliError(f"over must be ('layer',) (whole layers) or ('layer', 'unit'|'channel'|'position'), "
                       f"not {over!r}")
    return parts


def _layer_sites(layer: Layer, axis: str | None) -> _LayerSites:
    width = int(layer.width or 0)
    shape = tuple(int(size or 0) for size in (layer.shape or (width,)))
    where = _where(layer)
    if axis is None:
        return _LayerSites(layer, [where], np.array([-1]), np.ones((1, width), bool), (1,))
    if axis == "unit":
        return _LayerSites(layer, [f"{where}[{j}]" for j in range(width)], np.arange(width), np.eye(width, dtype=bool),
                           shape)
    if len(shape) != 3:
        raise RliError(f"over=('layer', {axis!r}) needs conv layers (outputs C×H×W); {where} has shape {shape}: "
                       "sweep it with over=('layer', 'unit'), or pass layers= with conv layers only")
    c, h, w = shape
    grid = np.arange(width).reshape(shape)
    if axis == "channel":
        masks = np.zeros((c, width), bool)
        for k in range(c):
            masks[k, grid[k].ravel()] = True
        return _LayerSites(layer, [f"{where}[c{k}]" for k in range(c)], np.arange(c), masks, (c,))
    masks = np.zeros((h * w, width), bool)
    for k in range(h * w):
        masks[k, grid[:, k // w, k % w]] = True
    return _LayerSites(layer, [f"{where}[@{k // w},{k % w}]" for k in range(h * w)], np.arange(h * w), masks, (h, w))


_SITE = re.compile(r"^(?P<layer>.+?)(?:\[(?:(?P<unit>\d+)|c(?P<channel>\d+)|@(?P<row>\d+),(?P<col>\d+))\])?$")


def site_mask(policy: Policy, site: Any) -> tuple[Layer, np.ndarray, str]:
    """One patch site as ``(layer, mask, name)``: ``mask`` (width,) marks the flattened coordinates the site covers.

    ``site`` is named as in :attr:`PatchSweepResult.sites` (``"actor.3[7]"`` unit 7,
    ``"0[c2]"`` channel 2, ``"0[@1,2]"`` position (1, 2), ``"actor.3"`` the whole layer)
    or is a layer spec (an index, a dotted name, a :class:`~rli.Layer`: the whole layer).

    Example:
        >>> import torch.nn as nn, rli
        >>> from rli.patch_sweep import site_mask
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)))
        >>> layer, mask, name = site_mask(policy, "actor.1[2]")
        >>> name, mask.tolist()
        ('actor.1[2]', [False, False, True, False])
    """
    checks.policy(policy)
    if isinstance(site, (int, np.integer, Layer)) and not isinstance(site, bool):
        layer, part = policy.layer(int(site) if isinstance(site, np.integer) else site), None
    elif isinstance(site, str) and (match := _SITE.match(site.strip())) is not None:
        layer, part = policy.layer(match["layer"]), match
    else:
        raise RliError(f"a patch site is a layer (index or name) or a site name such as 'actor.3[7]' (unit), "
                       f"'0[c2]' (channel), '0[@1,2]' (position), not {site!r}")
    if not layer.width:
        raise RliError(f"layer {layer.name!r} does not run when the policy acts; see policy.layers")
    axis = None if part is None or part["layer"] == site.strip() else \
        "unit" if part["unit"] is not None else "channel" if part["channel"] is not None else "position"
    sites = _layer_sites(layer, axis)
    if axis is None:
        return layer, sites.masks[0], sites.names[0]
    assert part is not None
    if axis == "unit":
        index = int(part["unit"])
    elif axis == "channel":
        index = int(part["channel"])
    else:
        index = int(part["row"]) * sites.shape[1] + int(part["col"])
        if int(part["col"]) >= sites.shape[1]:
            index = len(sites.names)
    if not 0 <= index < len(sites.names):
        raise RliError(f"site {site!r} is outside layer {_where(layer)}, which has {len(sites.names)} {axis} sites "
                       f"(shape {sites.shape})")
    return layer, sites.masks[index], sites.names[index]


def _layers(policy: Policy, layers: Any, axis: str | None) -> list[Layer]:
    if layers is None:
        found = [layer for layer in policy.actor_layers if layer.width]
        if axis in ("channel", "position"):
            found = [layer for layer in found if layer.shape is not None and len(layer.shape) == 3]
            if not found:
                raise RliError(f"over=('layer', {axis!r}) needs conv layers and this policy's actor has none; "
                               "use over=('layer', 'unit')")
        return found
    given = [layers] if isinstance(layers, (int, np.integer, str, Layer)) else list(layers)
    specs: list[Any] = [int(spec) if isinstance(spec, np.integer) else spec for spec in given]
    if not specs:
        raise RliError("layers= is empty; give layers to sweep, or None for the whole actor trunk")
    out = []
    for spec in specs:
        layer = policy.layer(spec)
        if not layer.width:
            raise RliError(f"layer {layer.name!r} does not run when the policy acts; see policy.layers")
        out.append(layer)
    return list({layer.name: layer for layer in out}.values())


# ------------------------------------------------------------------------------------------ metric
class _Readout:
    """The metric per row from one captured forward pass (and its differentiable twin for screening)."""

    def __init__(self, policy: Policy, metric: Metric) -> None:
        self.policy = policy
        self.head = policy.actor_layers[-1]
        self.name = metric if isinstance(metric, str) else getattr(metric, "__name__", "callable")
        self.metric = metric
        space = policy.action_space
        discrete = space is not None and type(space).__name__ == "Discrete"
        if isinstance(metric, str):
            if metric not in METRICS:
                raise RliError(f"metric must be one of {', '.join(map(repr, METRICS))} or a callable f(head) -> (n,), "
                               f"not {metric!r}")
            if metric == "value" and not policy.critic_layers:
                raise RliError(f"metric='value' needs a critic and this {policy.kind} policy has none; use "
                               "metric='action_agreement', 'logit' or 'prob'")
            if metric in ("logit", "prob") and not (discrete and self.head.width == int(space.n)):
                raise RliError(f"metric={metric!r} reads the action head's output at the chosen action, which needs "
                               f"a Discrete action space with one output per action (this policy: {space}, head "
                               f"{_where(self.head)} width {self.head.width}); use metric='value' or a callable")
            if metric == "action_agreement" and space is not None and type(space).__name__ == "Box":
                raise RliError("metric='action_agreement' compares discrete actions; this policy's actions are "
                               "continuous: use metric='value' or a callable on the action head (e.g. the mean "
                               "action component k: lambda head: head[:, k])")
        elif not callable(metric):
            raise RliError(f"metric must be a name ({', '.join(METRICS)}) or a callable, not {metric!r}")
        self.value_layer = policy.critic_layers[-1] if metric == "value" else self.head

    @property
    def layers(self) -> list[Layer]:
        return [self.value_layer]

    def rows(self, outputs: dict[str, np.ndarray], actions: np.ndarray | None, reference: np.ndarray) -> np.ndarray:
        """Per-row metric given captured outputs; ``reference`` is the clean action (or head argmax) per row."""
        if self.metric == "value":
            return outputs[self.value_layer.name][:, 0].astype(np.float64)
        head = outputs[self.head.name].astype(np.float64)
        if self.metric == "action_agreement":
            assert actions is not None
            same = actions.reshape(len(actions), -1) == reference.reshape(len(reference), -1)
            return same.all(axis=1).astype(np.float64)
        if self.metric == "logit":
            return head[np.arange(len(head)), reference.astype(int)]
        if self.metric == "prob":
            return _softmax(head)[np.arange(len(head)), reference.astype(int)]
        assert callable(self.metric)
        values = np.asarray(self.metric(head), dtype=np.float64)
        if values.shape != (len(head),) or not np.all(np.isfinite(values)):
            raise RliError(f"the metric callable must return one finite number per row, shape ({len(head)},); "
                           f"it returned shape {values.shape}")
        return values

    def differentiable(self, head: torch.Tensor, reference: np.ndarray) -> torch.Tensor:
        """The metric summed over rows, as a torch scalar (action agreement screens with the clean action's probability)."""
        index = torch.as_tensor(reference.astype(np.int64), device=head.device)
        if self.metric in ("logit",):
            return head.gather(1, index[:, None]).sum()
        if self.metric in ("prob", "action_agreement"):
            return torch.softmax(head, dim=1).gather(1, index[:, None]).sum()
        if self.metric == "value":
            raise RliError("screen='attribution' differentiates the actor's output; metric='value' reads the critic: "
                           "sweep it without a screen, or screen with metric='logit'")
        assert callable(self.metric)
        out: Any = self.metric(head)  # type: ignore[arg-type]  # a callable on tensors too
        if not isinstance(out, torch.Tensor):
            raise RliError("screen='attribution' with a callable metric needs it to work on torch tensors too "
                           "(it is differentiated); write it with tensor operations, or pass screen=None")
        return out.sum()


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ running
class _SiteEdit:
    """``rows`` of ``m`` stacked copies of a batch: in copy ``j`` the coordinates ``masks[j]`` come from ``source``."""

    def __init__(self, source: np.ndarray, masks: np.ndarray) -> None:
        self._source, self._masks = source, masks
        self._tensors: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        key = (rows.device, rows.dtype)
        if key not in self._tensors:
            self._tensors[key] = (torch.as_tensor(self._source, dtype=rows.dtype, device=rows.device),
                                  torch.as_tensor(self._masks, device=rows.device))
        source, masks = self._tensors[key]
        m, n = masks.shape[0], source.shape[0]
        if rows.shape[0] != m * n:
            raise RliError(f"a patch-sweep batch holds {m}×{n} rows but the layer ran on {rows.shape[0]}")
        stacked = rows.reshape(m, n, -1)
        return torch.where(masks[:, None, :], source[None], stacked).reshape(rows.shape)


def _stack(obs: Any, m: int) -> Any:
    n = len(obs)
    index = np.tile(np.arange(n), m)
    return obs[index] if isinstance(obs, ObsSet) else np.asarray(obs)[index]


def _measure(policy: Policy, readout: _Readout, obs: Any, reference: np.ndarray, m: int,
             recurrent_state: RecurrentState | None) -> np.ndarray:
    """Metric rows for ``m`` stacked copies of ``obs`` (whatever interventions are active) → (m, n)."""
    stacked = _stack(obs, m)
    size = len(stacked)
    outputs = capture(policy, stacked, layers=readout.layers, chunk_size=size, recurrent_state=recurrent_state)
    actions = None
    if readout.metric == "action_agreement":
        actions = policy.act(stacked, chunk_size=size, recurrent_state=recurrent_state) if policy.is_recurrent \
            else policy.act(np.asarray(stacked.obs if isinstance(stacked, ObsSet) else stacked), chunk_size=size)
    values = readout.rows({name: outputs[name] for name in outputs}, actions, np.tile(reference, m))
    return values.reshape(m, len(obs))


#: Differences within ``ROUNDING_ULPS`` float32 epsilons of the metric's scale are rounding, not effects.
ROUNDING_ULPS = 64


def rounding_tolerance(clean_metric: np.ndarray) -> float:
    """The float noise floor of a metric: ``ROUNDING_ULPS · ε · max_i |metric_i|`` with ε float32's epsilon (2⁻²³).

    rli reads activations as float32, and the same activation recomputed in another batch
    shape (a stacked patching pass, a different BLAS kernel) or from an input one ulp away
    differs by a few ulps; after the layers that follow, the metric moves by a few ulps of
    its own scale. A per-row change no larger than this tolerance (7.6e-6 of the scale)
    is taken as exactly zero, so rounding is never reported as an effect.

    Example:
        >>> import numpy as np
        >>> from rli.patch_sweep import rounding_tolerance
        >>> float(rounding_tolerance(np.array([0.5, -2.0]))) == 64 * 2.0 * 2.0 ** -23
        True
    """
    scale = float(np.max(np.abs(clean_metric))) if clean_metric.size else 0.0
    return ROUNDING_ULPS * float(np.finfo(np.float32).eps) * scale


def _denoised(diffs: np.ndarray, tolerance: float) -> np.ndarray:
    return np.where(np.abs(diffs) <= tolerance, 0.0, diffs)


def _site_stats(diffs: np.ndarray, groups: np.ndarray | None) -> tuple[float, tuple[float, float], float]:
    values = diffs if groups is None else np.array([diffs[groups == g].mean() for g in np.unique(groups)])
    mean = float(values.mean())
    if values.max() == values.min():
        return mean, (mean, mean), 1.0 if values[0] == 0 else 0.0
    low, high = stats.t_interval(values)
    _, p = stats.paired_ttest(values, np.zeros_like(values))
    return mean, (low, high), p


def _groups(clean: Any, groups: Any, n: int) -> np.ndarray | None:
    if groups is None:
        if isinstance(clean, ObsSet) and "episode" in clean.labels:
            groups = clean.labels["episode"]
        else:
            return None
    elif isinstance(groups, str):
        if not isinstance(clean, ObsSet) or groups not in clean.labels:
            raise RliError(f"groups={groups!r} names a label, but clean has no such label; pass an array of group ids")
        groups = clean.labels[groups]
    arr = np.asarray(groups)
    if arr.shape != (n,):
        raise RliError(f"groups must give one group id per row ({n}), got shape {arr.shape}")
    if len(np.unique(arr)) < 2:
        raise RliError("groups holds a single group; an interval over groups needs at least 2 (e.g. 2+ episodes)")
    return arr


def patch_sweep(policy: Policy, clean: Any, corrupt: Any, *, metric: Metric = "action_agreement",
                over: Any = ("layer", "unit"), layers: LayerSpec | Sequence[LayerSpec] | None = None,
                screen: str | None = None, top: int = 20, correction: str = "holm", alpha: float = 0.05,
                groups: Any = None, chunk_size: int = 65536,
                recurrent_state: RecurrentState | None = None) -> PatchSweepResult:
    """Patch each site's activations from ``corrupt`` into ``clean`` (paired rows) and measure the metric change.

    ``clean`` and ``corrupt`` are arrays or :class:`~rli.ObsSet` with the same number of
    rows; row ``i`` of ``corrupt`` is the counterfactual of row ``i`` of ``clean``.
    ``over`` is ``("layer",)`` (whole layers) or ``("layer", "unit"|"channel"|"position")``
    (channels and positions of conv layers); ``layers`` defaults to the actor trunk.
    ``groups`` (array or label name; default the ``episode`` label of an ObsSet) makes
    intervals and p-values run over group means. ``screen="attribution"`` estimates
    every site first and patches only the ``top`` largest in absolute value. A
    recurrent policy runs every row from the hidden state ``recurrent_state`` chooses,
    as in :func:`rli.capture`. ``chunk_size`` bounds the rows of one stacked forward.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, gymnasium as gym, rli
        >>> from rli.patch_sweep import patch_sweep
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> policy = rli.load_policy(net, action_space=gym.spaces.Discrete(2))
        >>> x = np.random.default_rng(0).normal(size=(40, 2))
        >>> same = patch_sweep(policy, x, x, metric="logit", layers=[1])
        >>> bool(np.all(same.effect == 0)), len(same.sites)
        (True, 4)
    """
    with one_torch_thread():  # many small forward passes: under load, extra torch threads only spin-wait
        return _patch_sweep(policy, clean, corrupt, metric=metric, over=over, layers=layers, screen=screen, top=top,
                            correction=correction, alpha=alpha, groups=groups, chunk_size=chunk_size,
                            recurrent_state=recurrent_state)


def _patch_sweep(policy: Policy, clean: Any, corrupt: Any, *, metric: Metric, over: Any, layers: Any,
                 screen: str | None, top: int, correction: str, alpha: float, groups: Any, chunk_size: int,
                 recurrent_state: RecurrentState | None) -> PatchSweepResult:
    checks.policy(policy)
    axes = _over(over)
    axis = axes[1] if len(axes) > 1 else None
    correction = stats.check_correction(correction)
    alpha = stats.check_alpha(alpha)
    chunk_size = checks.count(chunk_size, "chunk_size", hint=" (rows per stacked forward pass)")
    if screen not in (None, "attribution"):
        raise RliError(f"screen must be None (patch every site) or 'attribution' (gradient estimate first), "
                       f"not {screen!r}")
    top = checks.count(top, "top")
    recurrent.check_mode(recurrent_state)
    n = len(clean)
    if len(corrupt) != n:
        raise RliError(f"clean has {n} rows and corrupt {len(corrupt)}; patching pairs row i of one with row i of "
                       "the other: give the same number of rows")
    if n < 2:
        raise RliError(f"a patch sweep needs at least 2 clean/corrupt pairs, got {n}")
    readout = _Readout(policy, metric)
    group_ids = _groups(clean, groups, n)
    resolved = _layers(policy, layers, axis)
    per_layer = [_layer_sites(layer, axis) for layer in resolved]
    clean_acts = capture(policy, clean, layers=resolved, recurrent_state=recurrent_state)
    corrupt_acts = capture(policy, corrupt, layers=resolved, recurrent_state=recurrent_state)
    clean_out = capture(policy, clean, layers=[*readout.layers, readout.head], recurrent_state=recurrent_state)
    head = clean_out[readout.head.name]
    reference = (policy.act(clean, recurrent_state=recurrent_state) if policy.is_recurrent else
                 policy.act(np.asarray(clean.obs if isinstance(clean, ObsSet) else clean)))
    if readout.metric in ("logit", "prob"):
        reference = head.argmax(axis=1)
    base = _measure(policy, readout, clean, reference, 1, recurrent_state)[0]
    tolerance = rounding_tolerance(base)
    total = _denoised(_measure(policy, readout, corrupt, reference, 1, recurrent_state)[0] - base, tolerance)
    total_effect, total_ci, _ = _site_stats(total, group_ids)

    names = [name for sites in per_layer for name in sites.names]
    m = len(names)
    offsets = np.cumsum([0] + [len(s.names) for s in per_layer])
    score = None
    chosen = np.arange(m)
    if screen == "attribution":
        score = np.concatenate([_screen(policy, readout, clean, reference, sites, clean_acts[sites.layer.name],
                                        corrupt_acts[sites.layer.name], recurrent_state) for sites in per_layer])
        chosen = np.sort(np.argsort(-np.abs(score), kind="stable")[:top])
    effect = np.full(m, np.nan)
    ci = np.full((m, 2), np.nan)
    p = np.full(m, np.nan)
    for k, sites in enumerate(per_layer):
        wanted = [i - offsets[k] for i in chosen if offsets[k] <= i < offsets[k + 1]]
        per_pass = max(1, chunk_size // n)
        for start in range(0, len(wanted), per_pass):
            block = wanted[start:start + per_pass]
            edit = _SiteEdit(corrupt_acts[sites.layer.name], sites.masks[block])
            patch = Intervention(policy, sites.layer, "patch_sites", edit,
                                 f"patch {len(block)} sites of {_where(sites.layer)} from corrupt rows",
                                 {"sites": len(block)})
            with patch:
                rows = _measure(policy, readout, clean, reference, len(block), recurrent_state)
            for j, site in enumerate(block):
                i = offsets[k] + site
                effect[i], (ci[i, 0], ci[i, 1]), p[i] = _site_stats(_denoised(rows[j] - base, tolerance), group_ids)
    done = ~np.isnan(effect)
    adjusted = np.full(m, np.nan)
    adjusted[done] = stats.adjust(p[done], correction)
    rho = None
    if score is not None and done.sum() >= 3 and np.ptp(effect[done]) > 0 and np.ptp(score[done]) > 0:
        rho = float(st.spearmanr(score[done], effect[done]).statistic)
    return PatchSweepResult(
        metric=readout.name, over=axes, sites=tuple(names),
        layer=tuple(s.layer.name for s in per_layer for _ in s.names),
        index=np.concatenate([s.index for s in per_layer]), effect=effect, ci=ci, p_value=p, p_adjusted=adjusted,
        significant=np.where(done, adjusted < alpha, False), total_effect=total_effect, total_ci=total_ci, n=n,
        n_groups=n if group_ids is None else len(np.unique(group_ids)), correction=correction, alpha=alpha,
        shapes={s.layer.name: s.shape for s in per_layer}, screen_score=score, spearman=rho)


def _screen(policy: Policy, readout: _Readout, clean: Any, reference: np.ndarray, sites: _LayerSites,
            clean_acts: np.ndarray, corrupt_acts: np.ndarray, recurrent_state: RecurrentState | None) -> np.ndarray:
    """Attribution patching: per site, the mean over rows of ``Σ_site ∂metric/∂h · (h_corrupt − h_clean)``."""
    grad = activation_gradient(policy, sites.layer, clean, lambda head: readout.differentiable(head, reference),
                               recurrent_state=recurrent_state)
    contribution = grad.astype(np.float64) * (corrupt_acts.astype(np.float64) - clean_acts)
    return (contribution.mean(axis=0) @ sites.masks.T.astype(np.float64))


def head_under_edit(policy: Policy, layer: LayerSpec, obs: Any, edit: Callable[[torch.Tensor], torch.Tensor], *,
                    recurrent_state: RecurrentState | None = None) -> torch.Tensor:
    """The action head's output (n × a) with ``layer``'s rows replaced by ``edit(rows)``, with its autograd graph.

    The differentiable forward pass under :func:`activation_gradient` and :func:`rli.das.das`:
    ``edit`` may use tensors that require grad (a delta, a rotation being trained), and
    the result can be differentiated with respect to them (``torch.autograd.grad``, so that
    the policy's parameters get no ``.grad``). The edit is an :class:`rli.Intervention`
    active for this one forward pass; every module's train/eval flag and grad mode are
    restored after. A recurrent policy runs every row from the hidden state
    ``recurrent_state`` chooses (as in :func:`rli.capture`).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> from rli.patch_sweep import head_under_edit
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
        >>> shift = torch.zeros(3, requires_grad=True)
        >>> out = head_under_edit(policy, 0, np.zeros((2, 2)), lambda rows: rows + shift)
        >>> (grad,) = torch.autograd.grad(out.sum(), [shift])
        >>> bool(torch.allclose(grad, 2 * policy.module[1].weight[0]))
        True
    """
    target = checks.policy(policy).layer(layer)
    if not target.width:
        raise RliError(f"layer {target.name!r} does not run when the policy acts; see policy.layers")
    head_layer = policy.actor_layers[-1]
    arr = policy.prepare_obs(obs.obs if isinstance(obs, ObsSet) else obs)
    _, states = recurrent.resolve(policy, obs, recurrent_state)
    n = arr.shape[0]
    heads: list[torch.Tensor] = []

    def keep(_module: Any, _inputs: Any, output: Any) -> Any:
        heads.append(first_tensor(output))
        return output.detach() if isinstance(output, torch.Tensor) else None

    nudge = Intervention(policy, target, "differentiable_edit", edit, f"differentiable edit at {_where(target)}", {})
    modules = {sub: sub.training for sub in policy.module.modules()}
    try:
        policy.module.eval()
        with torch.enable_grad(), nudge:
            handle = policy.module.get_submodule(head_layer.name).register_forward_hook(keep)
            try:
                if states is not None:
                    policy.step_prepared(arr, recurrent.from_rows(policy, "actor", states), np.zeros(n))
                elif policy.is_recurrent:
                    policy.step_prepared(arr, None, np.ones(n))
                else:
                    policy.act_prepared(arr)
            finally:
                handle.remove()
    finally:
        for sub, training in modules.items():
            sub.train(training)
    if not heads:
        raise RliError(f"the action head {_where(head_layer)} did not run in the policy's forward pass")
    return heads[0]


def activation_gradient(policy: Policy, layer: LayerSpec, obs: Any, objective: Callable[[torch.Tensor], torch.Tensor],
                        *, recurrent_state: RecurrentState | None = None) -> np.ndarray:
    """``∂ objective(head) / ∂ h`` at ``layer`` for every row of ``obs`` (n × width), in one backward pass.

    ``objective`` maps the action head's output (a tensor n × a) to a scalar (a sum over
    rows, so that row ``i``'s gradient is its own). Parameters get no ``.grad``
    (``torch.autograd.grad``); see :func:`head_under_edit`.

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> from rli.patch_sweep import activation_gradient
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
        >>> g = activation_gradient(policy, 0, np.zeros((2, 2)), lambda head: head.sum())
        >>> bool(np.allclose(g, policy.module[1].weight.detach().numpy()))
        True
    """
    width = int(checks.policy(policy).layer(layer).width or 0)
    delta = torch.zeros((len(obs), width), device=policy.device, requires_grad=True)
    head = head_under_edit(policy, layer, obs, lambda rows: rows + delta.to(rows.dtype),
                           recurrent_state=recurrent_state)
    (grad,) = torch.autograd.grad(objective(head), [delta], allow_unused=True)
    return np.zeros((len(obs), width), np.float32) if grad is None else to_numpy(grad)
