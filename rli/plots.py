"""Figures of the interrogation protocol, as matplotlib ``Figure`` objects.

:func:`probe_heatmap` (truth beside a probe's held-out prediction over a 2-D
observation grid), :func:`layer_profile` (probe score by layer, with CIs and
controls), :func:`ablation_curve` (relative drop in return as directions are removed,
with the CI band), :func:`subspace_search` (the minimal-subspace walk) and
:func:`pca_scatter` (PC1 against PC2 of a layer, coloured by a target). The figures of the
other features are reachable from here too (loaded on first use): :func:`what_when_where` and
:func:`metric_curves` (training runs, :mod:`rli.training_plots`), :func:`attribution_bars`,
:func:`attribution_overlay` and :func:`extreme_frames` (:mod:`rli.attribution_plots`), and
:func:`patch_heatmap` (:mod:`rli.patch_plots`).

Figures are built with the Agg canvas and never registered with ``pyplot``: no global
state is touched, nothing needs closing, and they render without a display. Save one
with ``fig.savefig("profile.png")``. matplotlib is imported on first use, so
``import rli`` does not pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rli.deprecation import renamed_arguments
from rli.errors import RliError
from rli.observations import ObsSet
from rli.policy import Policy
from rli.probes import LayerProfile, ProbeResult
from rli.recurrent import RecurrentState
from rli.sweeps import AblationCurve, SubspaceSearch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_CONTROL_STYLE = {"untrained": ("untrained network", "#d95f02", "s"),
                  "shuffled": ("shuffled labels", "#7570b3", "v"),
                  "raw_obs": ("raw observation", "#1b9e77", "D")}
_MAIN = "#1f4e9c"
_FONT: Any = {"font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "figure.titlesize": 11.5}


def new_figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas (not registered with pyplot), with the module's font sizes."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_FONT):
        fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Axes) -> None:
    ax.grid(True, color="#e4e4e4", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def _layer_name(layer: str, index: int | None) -> str:
    return str(index) if index is not None else repr(layer)


# --------------------------------------------------------------------------------------- heat map
def heldout_predictions(policy: Policy, obs: Any, result: ProbeResult,
                         recurrent_state: RecurrentState | None = None) -> np.ndarray:
    """Each observation predicted by the fold model of ``result`` that did not see it (same folds and penalties).

    Rebuilds the K ridge fits of :func:`rli.probe` (same split, same per-fold penalty),
    so the map shows held-out predictions, never the fit on all the data. A recurrent
    policy runs ``obs`` from the hidden states ``recurrent_state`` chooses (as in
    :func:`rli.capture`); give the probe's own.
    """
    from rli.capture import capture
    from rli.moments import Moments, RidgeFit, fold_order
    from rli.probes import fold_split, probe_target

    if result.kind != "ridge":
        raise RliError(f"held-out predictions are rebuilt for ridge probes only, not {result.kind!r}; "
                       "pass the predictions as an array instead")
    y, _ = probe_target(obs, result.target, "ridge")
    if y.shape[1] != 1 or len(y) != result.n:
        raise RliError(f"the probe was fitted on {result.n} observations of one target; these observations give "
                       f"{len(y)} rows of {y.shape[1]} output(s): pass the observations the probe was fitted on")
    acts = capture(policy, obs, [result.layer], recurrent_state=recurrent_state)[result.layer].astype(np.float64)
    ids = fold_split(obs, y, result.folds, result.seed, **_split_of(result, obs)).ids
    order, bounds = fold_order(ids, result.folds)
    moments = Moments(result.folds)
    moments.add(acts, y, order, bounds)
    predictions = np.empty(len(y))
    for f, alpha in enumerate(result.fold_alphas):
        w, c = RidgeFit(moments.train(f), result.standardize).coef(alpha, slice(0, 1))
        rows = ids == f
        predictions[rows] = acts[rows] @ w[:, 0] + c[0]
    return predictions


def _split_of(result: ProbeResult, obs: Any) -> dict[str, Any]:
    """The ``split=`` / ``groups=`` that rebuild the folds ``result`` was scored on, from its description."""
    described = result.split or ""
    if described.startswith("rows"):
        return {"split": "rows"}
    if described.startswith("spatial blocks"):
        return {"split": "blocks"}
    by = described.removeprefix("grouped by ").split(",")[0]
    if isinstance(obs, ObsSet) and by in obs.labels:
        return {"groups": by}
    raise RliError(f"the probe was split {described!r}, by groups these observations do not carry as a label; "
                   "pass the predictions as an array instead")


def _axis_spec(spec: Any) -> dict[str, Any]:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return {"index": int(spec), "label": f"obs[{int(spec)}]", "unit": ""}
    if isinstance(spec, Mapping) and isinstance(spec.get("index"), (int, np.integer)):
        index = int(spec["index"])
        return {"index": index, "label": str(spec.get("label", f"obs[{index}]")), "unit": str(spec.get("unit", ""))}
    raise RliError(f"a grid axis is an observation index or a mapping {{'index': 9, 'label': ..., 'unit': 'm'}}, "
                   f"not {spec!r}")


def _with_unit(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else label


def probe_heatmap(
    result_or_predictions: ProbeResult | Any,
    grid: ObsSet,
    *,
    policy: Policy | None = None,
    target: str | None = None,
    axes: Sequence[Any] | None = None,
    target_unit: str = "",
    prediction_label: str = "prediction",
    title: str | None = None,
    recurrent_state: RecurrentState | None = None,
) -> Figure:
    """Truth, probe prediction and their difference over a 2-D observation grid, side by side.

    ``grid`` is an :class:`~rli.ObsSet` built by :meth:`ObsSet.grid` (or
    :func:`rli.envs.probe_grid`): its ``meta`` holds ``grid_shape`` and ``grid_axes``.
    Give a ridge :class:`~rli.ProbeResult` fitted on ``grid`` together with ``policy``,
    and every grid point is predicted by the cross-validation fold model that did not
    see it (held-out, as the score is); or give the predictions as an array (n,).
    Truth and prediction share one colour scale (diverging, centred on 0, when the
    truth takes both signs); the residual has its own.

    ``target`` is the label drawn as truth (default: the probe's target).
    ``axes`` is ``(horizontal, vertical)``: observation indices of the grid, or
    mappings ``{"index": 10, "label": "follower y − leader y", "unit": "m"}``
    (default: the grid's second axis across, the first one up). ``prediction_label``
    titles the middle panel when predictions are given as an array.
    ``recurrent_state`` is the one the probe was fitted with, for a recurrent policy
    (a grid carries no hidden states: ``"fresh"``, as for :func:`rli.capture`).

    Example:
        >>> import numpy as np, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)))
        >>> grid = rli.ObsSet.grid(np.zeros(2), {0: np.linspace(-1, 1, 20), 1: np.linspace(-2, 2, 30)},
        ...                        label_fn=lambda o: {"field": np.sin(o[:, 0]) * o[:, 1]})
        >>> result = rli.probe(policy, grid, "field", layer=1, controls=False)
        >>> fig = rli.plots.probe_heatmap(result, grid, policy=policy,
        ...                               axes=[{"index": 1, "label": "y", "unit": "m"}, 0])
        >>> [ax.get_title() for ax in fig.axes[:3]]
        ['truth', 'held-out prediction', 'prediction − truth']
        >>> fig.axes[0].get_xlabel()
        'y (m)'
    """
    if not isinstance(grid, ObsSet) or len(grid.meta.get("grid_shape", ())) != 2:
        raise RliError("probe_heatmap needs a 2-D grid: an ObsSet from ObsSet.grid(base, {i: values, j: values}) "
                       "(its meta holds grid_shape and grid_axes)")
    shape = [int(s) for s in grid.meta["grid_shape"]]
    dims = [int(i) for i in grid.meta.get("grid_axes", ())]
    if len(dims) != 2:
        raise RliError("the grid's meta has no grid_axes (the observation indices of its two axes); "
                       "build it with rli.ObsSet.grid")
    flat = grid.obs.reshape(len(grid), -1)
    dims = [d % flat.shape[1] for d in dims]
    horizontal, vertical = (_axis_spec(a) for a in (axes if axes is not None else (dims[1], dims[0])))
    if sorted([horizontal["index"] % flat.shape[1], vertical["index"] % flat.shape[1]]) != sorted(dims):
        raise RliError(f"axes {horizontal['index']} and {vertical['index']} are not the grid's axes {dims}")
    if isinstance(result_or_predictions, ProbeResult):
        if policy is None:
            raise RliError("a ProbeResult gives predictions only with the policy: pass policy=")
        result = result_or_predictions
        predicted = heldout_predictions(policy, grid, result, recurrent_state)
        name = target or result.target
        kind = "held-out prediction"
        head = (f"{result.kind} probe of {name!r} at layer {_layer_name(result.layer, result.layer_index)}: "
                f"held-out {'R²' if result.metric == 'r2' else result.metric} {result.score:.3f} "
                f"[{result.ci[0]:.3f}, {result.ci[1]:.3f}]")
    else:
        if target is None:
            raise RliError("with predictions given as an array, name the true label: target=")
        predicted = np.asarray(result_or_predictions, dtype=np.float64).ravel()
        name, kind, head = target, prediction_label, f"{prediction_label} of {target!r}"
        if predicted.size != len(grid):
            raise RliError(f"{predicted.size} predictions for a grid of {len(grid)} observations")
    truth = np.asarray(grid.label(name), dtype=np.float64)
    if truth.ndim != 1:
        raise RliError(f"label {name!r} has {truth.shape[1]} columns; a heat map shows one")
    transpose = horizontal["index"] % flat.shape[1] == dims[0]
    along = [flat[:, dims[0]].reshape(shape)[:, 0], flat[:, dims[1]].reshape(shape)[0, :]]
    h_values, v_values = (along[0], along[1]) if transpose else (along[1], along[0])

    def image(values: np.ndarray) -> np.ndarray:
        out = values.reshape(shape)
        return out.T if transpose else out

    images = [image(truth), image(predicted), image(predicted - truth)]
    low, high = min(truth.min(), predicted.min()), max(truth.max(), predicted.max())
    signed = truth.min() < 0 < truth.max()
    if signed:
        high = max(abs(low), abs(high))
        low = -high
    extent = _extent(h_values), _extent(v_values)
    same_unit = horizontal["unit"] and horizontal["unit"] == vertical["unit"]
    ratio = (extent[1][1] - extent[1][0]) / (extent[0][1] - extent[0][0]) if same_unit else 0.8
    fig = new_figure(12.0, max(3.3, min(6.5, 3.0 * ratio + 0.9)))
    panels = fig.subplots(1, 3)
    residual_lim = float(np.abs(images[2]).max()) or 1.0
    label = _with_unit(name, target_unit)
    for i, (ax, values, panel_title) in enumerate(zip(panels, images, ("truth", kind, "prediction − truth"))):
        residual = i == 2
        limits = (-residual_lim, residual_lim) if residual else (low, high)
        cmap = "PuOr_r" if residual else ("RdBu_r" if signed else "viridis")
        shown = ax.imshow(values, origin="lower", extent=(*extent[0], *extent[1]), cmap=cmap, vmin=limits[0],
                          vmax=limits[1], aspect="equal" if same_unit else "auto", interpolation="nearest")
        ax.set_title(panel_title)
        ax.set_xlabel(_with_unit(horizontal["label"], horizontal["unit"]))
        if i == 0:
            ax.set_ylabel(_with_unit(vertical["label"], vertical["unit"]))
        ax.tick_params(labelsize=9)
        if i > 0:
            bar = fig.colorbar(shown, ax=ax if residual else list(panels[:2]), shrink=0.85)
            bar.set_label(f"error in {label}" if residual else label)
    fig.suptitle(title or head)
    return fig


def _extent(values: np.ndarray) -> tuple[float, float]:
    step = float(values[1] - values[0]) if values.size > 1 else 1.0
    return float(values[0] - step / 2), float(values[-1] + step / 2)


# ---------------------------------------------------------------------------------- layer profile
def layer_profile(profile: LayerProfile, *, highlight: Any = None, title: str | None = None) -> Figure:
    """Held-out probe score by layer with its 95% CI, and the controls of each layer.

    ``highlight`` marks one layer (an index, alias or name in the profile). Scores
    below −0.5 are drawn at the bottom edge (their values are printed there).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh()))
        >>> x = np.random.default_rng(0).normal(size=(300, 3))
        >>> profile = rli.probe_layers(policy, x, x[:, 0] * x[:, 1])
        >>> fig = rli.plots.layer_profile(profile, highlight=3)
        >>> ax = fig.axes[0]
        >>> ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()][:2]
        ('held-out R²', ['trained network (95% CI)', 'untrained network'])
    """
    results = profile.results
    first = results[0]
    score = "R²" if first.metric == "r2" else "accuracy"
    x = np.arange(len(results))
    r2 = np.array([r.score for r in results])
    ci = np.array([r.ci for r in results])
    fig = new_figure(7.6, 4.2)
    ax = fig.subplots()
    _style(ax)
    floor = -0.5
    shown = np.maximum(r2, floor)
    yerr = np.clip(np.vstack([shown - np.maximum(ci[:, 0], floor), np.maximum(ci[:, 1], floor) - shown]), 0, None)
    ax.errorbar(x, shown, yerr=yerr, color=_MAIN, marker="o", markersize=5, linewidth=1.8, capsize=3,
                label="trained network (95% CI)", zorder=3)
    for name, (label, colour, marker) in _CONTROL_STYLE.items():
        values = np.array([r.controls.get(name, np.nan) for r in results])
        if np.all(np.isnan(values)):
            continue
        ax.plot(x, np.maximum(values, floor), color=colour, marker=marker, markersize=4, linewidth=1.1,
                linestyle="--", label=label, zorder=2)
    for i, value in enumerate(r2):
        if value < floor:
            ax.annotate(f"{value:.2f}", (i, floor), textcoords="offset points", xytext=(0, 6), ha="center",
                        fontsize=8, color=_MAIN)
    if highlight is not None:
        chosen = profile[highlight]
        at = results.index(chosen)
        ax.axvspan(at - 0.4, at + 0.4, color="#f2c14e", alpha=0.25, zorder=0,
                   label=f"chosen layer {_layer_name(chosen.layer, chosen.layer_index)}")
    ax.set_xticks(x, [f"{_layer_name(r.layer, r.layer_index)}\n{r.layer_type}" for r in results])
    ax.set_xlabel("layer (actor-trunk index and module type)")
    ax.set_ylabel(f"held-out {score}")
    bottom = floor if np.nanmin(np.r_[r2, ci[:, 0]]) < floor else min(-0.05, float(np.nanmin(ci[:, 0])) - 0.05)
    ax.set_ylim(bottom, 1.05)
    ax.axhline(0, color="#999999", linewidth=0.8)
    handles, labels = ax.get_legend_handles_labels()
    first_label = labels.index("trained network (95% CI)")
    order = [first_label] + [i for i in range(len(labels)) if i != first_label]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="best", fontsize=8.5, frameon=False)
    ax.set_title(title or f"{first.kind} probe of {first.target!r} by layer (n = {first.n}, {first.split})")
    return fig


# ---------------------------------------------------------------------------------- ablation curve
def ablation_curve(curve: AblationCurve, *, title: str | None = None) -> Figure:
    """Relative drop in return at each point of an :class:`~rli.AblationCurve`, with its 95% CI band.

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> obs = rli.ObsSet.sample(policy, 300, seed=0)
        >>> curve = rli.ablation_curve(policy, "CartPole-v1", 1, obs, ks=[1, 2, 4], episodes=3)
        >>> fig = rli.plots.ablation_curve(curve)
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
        ('k (top principal directions removed)', 'relative drop in return (%)')
    """
    values = np.asarray(curve.values, dtype=float)
    drops = np.array([np.nan if d is None else 100 * d for d in curve.relative_drops])
    bands = np.array([(np.nan, np.nan) if c.relative_ci is None else (100 * c.relative_ci[0], 100 * c.relative_ci[1])
                      for c in curve.comparisons])
    fig = new_figure(7.2, 4.0)
    ax = fig.subplots()
    _style(ax)
    ax.fill_between(values, bands[:, 0], bands[:, 1], color=_MAIN, alpha=0.18, linewidth=0, label="95% CI (paired t)")
    ax.plot(values, drops, color=_MAIN, marker="o", markersize=5, linewidth=1.8, label="mean relative drop")
    ax.axhline(0, color="#999999", linewidth=0.8)
    if curve.parameter == "k":
        if values.max() / values.min() >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.set_xlabel("k (top principal directions removed)")
    else:
        ax.set_xlabel("alpha (0 removes the direction, 1 keeps it, −1 reflects it)")
    ax.set_ylabel("relative drop in return (%)")
    ax.legend(loc="best", fontsize=8.5, frameon=False)
    ax.set_title(title or f"ablation at {curve.layer}\n{len(curve.baseline.returns)} paired episodes per point, "
                          f"baseline return {curve.baseline.mean:.4g}")
    return fig


def subspace_search(search: SubspaceSearch, *, title: str | None = None) -> Figure:
    """Relative drop in return when keeping only the first k directions of a :func:`rli.minimal_subspace` walk.

    The y axis is linear within ±10% and logarithmic beyond, so the tolerance line
    stays readable beside drops of several hundred percent.

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> obs = rli.ObsSet.sample(policy, 300, seed=0)
        >>> search = rli.minimal_subspace(policy, "CartPole-v1", 1, obs, candidates=3, method="ordered", episodes=3)
        >>> rli.plots.subspace_search(search).axes[0].get_xlabel()
        'k (principal directions kept)'
    """
    ks = np.array([len(step.kept) for step in search.steps])
    drops = np.array([np.nan if s.comparison.relative_drop is None else 100 * s.comparison.relative_drop
                      for s in search.steps])
    bands = np.array([(np.nan, np.nan) if s.comparison.relative_ci is None else
                      (100 * s.comparison.relative_ci[0], 100 * s.comparison.relative_ci[1]) for s in search.steps])
    fig = new_figure(7.2, 4.0)
    ax = fig.subplots()
    _style(ax)
    ax.fill_between(ks, bands[:, 0], bands[:, 1], color=_MAIN, alpha=0.18, linewidth=0, label="95% CI (paired t)")
    ax.plot(ks, drops, color=_MAIN, marker="o", markersize=4, linewidth=1.6, label="mean relative drop")
    ax.axhline(100 * search.tolerance, color="#b3261e", linestyle="--", linewidth=1.1,
               label=f"tolerance {search.tolerance:.0%}")
    ax.axhline(0, color="#999999", linewidth=0.8)
    if search.found:
        ax.plot([search.k], [drops[-1]], marker="*", markersize=13, color="#f2a900", linestyle="none",
                label=f"sufficient: k = {search.k}")
    ax.set_yscale("symlog", linthresh=10)
    low, high = np.nanmin(np.r_[bands[:, 0], drops, 0.0]), np.nanmax(np.r_[bands[:, 1], drops, 100 * search.tolerance])
    ax.set_yticks([t for t in _SYMLOG_TICKS if low * 1.5 <= t <= high * 1.5 or t == 0])
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.yaxis.set_minor_locator(_no_ticks())
    ax.set_xlabel("k (principal directions kept)")
    ax.set_ylabel("relative drop in return (%)")
    from matplotlib.ticker import MaxNLocator

    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one
        locator.set_params(integer=True)
    ax.legend(loc="best", fontsize=8.5, frameon=False)
    order = "by explained variance" if search.method == "ordered" else "greedy"
    ax.set_title(title or f"keep-only subspaces at {search.layer}\n({order}; the rest held at its mean)")
    return fig


_SYMLOG_TICKS = (-1000, -500, -250, -100, -50, -25, -10, -5, 0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


def _percent_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def _no_ticks() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


# ------------------------------------------------------------------------------------ PCA scatter
@renamed_arguments(basis="direction")
def pca_scatter(
    acts: Any,
    target: Any,
    *,
    direction: Any = None,
    target_name: str = "target",
    target_unit: str = "",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """PC1 against PC2 of activations (n, d), each point coloured by its target value.

    ``direction`` (d, ≥2) gives the directions to project on (e.g. PCs fitted elsewhere,
    as :func:`rli.fit_pca` returns them and interventions take them; ``basis=`` before,
    deprecated); by default the top two principal directions of ``acts``. Axis labels give each
    direction's share of the variance of ``acts``. At most ``max_points`` points are
    drawn (a seeded subsample). Colours span the 1st to 99th percentile of the target
    (arrows on the colour bar mark values beyond); a target that takes both signs in
    earnest gets a diverging scale centred on 0.

    Example:
        >>> import numpy as np, rli
        >>> rng = np.random.default_rng(0)
        >>> acts = rng.normal(size=(400, 6)) * [3.0, 2.0, 1.0, 1.0, 0.5, 0.1]
        >>> fig = rli.plots.pca_scatter(acts, acts[:, 0], target_name="speed", target_unit="m/s")
        >>> fig.axes[0].get_xlabel(), fig.axes[1].get_ylabel()
        ('PC1 (61% of variance)', 'speed (m/s)')
    """
    from rli.subspace import as_matrix, fit_pca

    arr = as_matrix(acts, "activations")
    values = np.asarray(target, dtype=np.float64).ravel()
    if arr.ndim != 2 or values.size != arr.shape[0]:
        raise RliError(f"pca_scatter takes activations (n, d) and one target value per row; got {arr.shape} and "
                       f"{values.size} values")
    base = fit_pca(arr, 2)[0] if direction is None else as_matrix(direction, "direction")
    if base.ndim != 2 or base.shape[0] != arr.shape[1] or base.shape[1] < 2:
        raise RliError(f"direction must be (d, ≥2) with d = {arr.shape[1]}; got {base.shape}")
    centred = arr - arr.mean(axis=0)
    coords = centred @ base[:, :2]
    total = float((centred**2).sum()) or 1.0
    shares = (coords**2).sum(axis=0) / total
    keep = np.arange(len(values))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(values), max_points, replace=False))
    low, high = np.percentile(values, [1, 99])
    signed = np.percentile(values, 5) < 0 < np.percentile(values, 95)
    if signed:
        high = max(abs(low), abs(high))
        low = -high
    elif low == high:
        low, high = values.min(), values.max()
    fig = new_figure(6.4, 5.0)
    ax = fig.subplots()
    _style(ax)
    shown = ax.scatter(coords[keep, 0], coords[keep, 1], c=values[keep], s=7, alpha=0.8, linewidths=0,
                       cmap="RdBu_r" if signed else "viridis", vmin=low, vmax=high)
    bar = fig.colorbar(shown, ax=ax, extend=_extend(values, low, high))
    bar.set_label(_with_unit(target_name, target_unit))
    ax.set_xlabel(f"PC1 ({shares[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({shares[1]:.0%} of variance)")
    ax.set_title(title or f"first two principal directions, coloured by {target_name!r} ({len(keep)} points)")
    return fig


def _extend(values: np.ndarray, low: float, high: float) -> str:
    """Colour-bar arrows for values beyond the (robust) colour limits."""
    below, above = values.min() < low, values.max() > high
    return "both" if below and above else "min" if below else "max" if above else "neither"


#: figures that live in their feature's module, reachable as ``rli.plots.<name>`` (imported on first use:
#: attribution needs captum).
_ELSEWHERE = {
    "what_when_where": "rli.training_plots",
    "metric_curves": "rli.training_plots",
    "attribution_bars": "rli.attribution_plots",
    "attribution_overlay": "rli.attribution_plots",
    "extreme_frames": "rli.attribution_plots",
    "patch_heatmap": "rli.patch_plots",
}


def __getattr__(name: str) -> Any:
    """``rli.plots.what_when_where`` and the other figures of :data:`_ELSEWHERE`, from their modules."""
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
