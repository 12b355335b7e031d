"""Figures across training: the what–when–where heat map and metric curves over steps with CI bands.

:func:`what_when_where` (McGrath et al. 2022): layer × training step heat map of a probe
metric (held-out R²), one panel per target; each cell is annotated with its value and
CI half-width, and cells whose 95% CI is wider than ``wide`` are hatched.
:func:`metric_curves`: one curve per layer over training steps with its CI band; with
several training seeds, the IQM over seeds at each step with its stratified-bootstrap band
(:func:`rli.runstats.stratified_bootstrap`).

Both read a sweep's records (``SweepTable.to_records()``, or a :class:`rli.sb3.ProbeCallback`
store) and return a ``Figure`` on an Agg canvas, as :mod:`rli.plots` does (never registered
with pyplot); ``path=`` also saves it. The drawn arrays are attached to the figure as
``fig.rli_data`` (what tests compare with the records).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rli.errors import RliError
from rli.plots import new_figure
from rli.runstats import select, stratified_bootstrap

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, int(value)) if isinstance(value, (int, np.integer)) or str(value).isdigit() else (1, str(value))


def _rows(records: Iterable[Mapping[str, Any]], metric: str, analysis: str | None) -> list[dict[str, Any]]:
    rows = select(records, metric=metric, analysis=analysis)
    if not rows:
        raise RliError(f"no records with metric={metric!r}; check the metric name against the sweep's table")
    for key in ("step", "layer", "target", "value", "seed"):
        if key not in rows[0]:
            raise RliError(f"records have no {key!r} field; they need the keys of SweepTable.to_records()")
    return rows


def _cells(rows: list[dict[str, Any]], what: str) -> dict[tuple[Any, int], dict[Any, dict[str, Any]]]:
    """(layer, step) -> {seed: record}; several records for one seed there is an error."""
    cells: dict[tuple[Any, int], dict[Any, dict[str, Any]]] = {}
    for r in rows:
        seeds = cells.setdefault((r["layer"], int(r["step"])), {})
        if r["seed"] in seeds:
            raise RliError(f"{what}: several records for layer {r['layer']!r}, step {r['step']}, seed {r['seed']!r}; "
                           "filter the records to one analysis (analysis=)")
        seeds[r["seed"]] = r
    return cells


def _aggregate(seeds: Mapping[Any, Mapping[str, Any]], seed: int) -> tuple[float, float, float]:
    """One seed: its value and CI; several: the IQM over seeds and its stratified-bootstrap CI."""
    if len(seeds) == 1:
        (r,) = seeds.values()
        low = r.get("ci_low")
        high = r.get("ci_high")
        value = float(r["value"])
        return value, float("nan") if low is None else float(low), float("nan") if high is None else float(high)
    est = stratified_bootstrap([float(r["value"]) for r in seeds.values()], "iqm", n_resamples=2000, seed=seed)
    return est.value, est.ci[0], est.ci[1]


def what_when_where(records: Iterable[Mapping[str, Any]], *, targets: Sequence[str] | None = None,
                    metric: str = "r2", analysis: str | None = None, wide: float = 0.1, vmin: float = 0.0,
                    vmax: float = 1.0, title: str | None = None, path: Any = None, seed: int = 0) -> Figure:
    """Layer (rows) × training step (columns) heat map of ``metric``, one panel per target.

    Each cell shows the value and ``±`` its CI half-width; cells whose CI is wider than
    ``wide`` are hatched (the estimate there is loose). Several seeds per cell are
    aggregated by IQM with a stratified-bootstrap CI. ``fig.rli_data[target]`` holds the
    drawn ``values``, ``ci_low``, ``ci_high`` (layers × steps, NaN where no record) with
    ``layers`` and ``steps``.

    Example:
        >>> from rli.training_plots import what_when_where
        >>> rows = [{"step": s, "seed": 0, "layer": l, "target": "u", "metric": "r2", "value": 0.1 * l + s / 100,
        ...          "ci_low": 0.0, "ci_high": 1.0} for s in (0, 10) for l in (1, 3)]
        >>> fig = what_when_where(rows)
        >>> fig.rli_data["u"]["values"].shape
        (2, 2)
    """
    rows = _rows(records, metric, analysis)
    present = sorted({str(r["target"]) for r in rows})
    chosen = present if targets is None else [str(t) for t in targets]
    missing = [t for t in chosen if t not in present]
    if missing or not chosen:
        raise RliError(f"targets {missing or chosen!r} have no {metric!r} records; the records have {present}")
    fig = new_figure(max(4.5, 1.0 + 0.75 * len({r["step"] for r in rows})) * len(chosen), 3.6)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    data: dict[str, dict[str, Any]] = {}
    image = None
    for ax, target in zip(axes, chosen):
        cells = _cells([r for r in rows if str(r["target"]) == target], "what_when_where")
        layers = sorted({k[0] for k in cells}, key=_sort_key)
        steps = sorted({k[1] for k in cells})
        values, low, high = (np.full((len(layers), len(steps)), np.nan) for _ in range(3))
        for (layer, step), seeds in cells.items():
            i, j = layers.index(layer), steps.index(step)
            values[i, j], low[i, j], high[i, j] = _aggregate(seeds, seed)
        image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        half = (high - low) / 2
        for i in range(len(layers)):
            for j in range(len(steps)):
                if np.isnan(values[i, j]):
                    continue
                text = f"{values[i, j]:.2f}" + ("" if np.isnan(half[i, j]) else f"\n±{half[i, j]:.2f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < (vmin + vmax) / 2 else "black")
                if not np.isnan(half[i, j]) and 2 * half[i, j] > wide:
                    ax.add_patch(_hatch(j, i))
        ax.set_xticks(range(len(steps)), [_step_label(s) for s in steps])
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("training step")
        ax.set_ylabel("layer")
        ax.set_title(target)
        data[target] = {"layers": layers, "steps": steps, "values": values, "ci_low": low, "ci_high": high}
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=f"held-out {metric}", shrink=0.9)
    fig.suptitle(title or f"what–when–where: {metric} by layer and training step (hatched: 95% CI wider than {wide:g})")
    return _finish(fig, data, path)


def _hatch(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#ffffff88", linewidth=0)


def _step_label(step: int) -> str:
    return f"{step // 1000}k" if step >= 1000 and step % 1000 == 0 else str(step)


def _finish(fig: Figure, data: dict[str, Any], path: Any) -> Figure:
    fig.rli_data = data  # type: ignore[attr-defined]
    if path is not None:
        fig.savefig(Path(path))
    return fig


def metric_curves(records: Iterable[Mapping[str, Any]], metric: str = "r2", *, target: str | None = None,
                  layers: Sequence[Any] | None = None, analysis: str | None = None, threshold: float | None = None,
                  title: str | None = None, path: Any = None, seed: int = 0) -> Figure:
    """``metric`` over training steps, one curve per layer with its CI band (IQM over seeds when there are several).

    ``threshold`` draws a horizontal line (e.g. the emergence threshold).
    ``fig.rli_data[layer]`` holds the drawn ``steps``, ``values``, ``ci_low``, ``ci_high``
    and ``n_seeds``.

    Example:
        >>> from rli.training_plots import metric_curves
        >>> rows = [{"step": s, "seed": k, "layer": 5, "target": "u", "metric": "r2", "value": s / 10 + k / 100}
        ...         for s in (0, 5) for k in range(3)]
        >>> fig = metric_curves(rows, "r2")
        >>> [round(float(v), 2) for v in fig.rli_data[5]["values"]]
        [0.01, 0.51]
    """
    rows = _rows(records, metric, analysis)
    if target is not None:
        rows = [r for r in rows if str(r["target"]) == str(target)]
    targets = sorted({str(r["target"]) for r in rows})
    if len(targets) != 1:
        raise RliError(f"metric_curves draws one target; the records have {targets or 'none'}: pass target=")
    if layers is not None:
        wanted = {str(layer) for layer in layers}
        rows = [r for r in rows if str(r["layer"]) in wanted]
        if not rows:
            raise RliError(f"no records for layers {list(layers)!r}")
    cells = _cells(rows, "metric_curves")
    fig = new_figure(6.4, 3.8)
    ax = fig.subplots()
    data: dict[Any, dict[str, Any]] = {}
    colors = ["#1f4e9c", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    for n, layer in enumerate(sorted({k[0] for k in cells}, key=_sort_key)):
        steps = sorted(k[1] for k in cells if k[0] == layer)
        drawn = np.array([_aggregate(cells[(layer, s)], seed) for s in steps])
        color = colors[n % len(colors)]
        n_seeds = [len(cells[(layer, s)]) for s in steps]
        label = f"layer {layer}" + (f" (IQM of {max(n_seeds)} seeds)" if max(n_seeds) > 1 else "")
        ax.plot(steps, drawn[:, 0], marker="o", markersize=3.5, color=color, label=label)
        ax.fill_between(steps, drawn[:, 1], drawn[:, 2], color=color, alpha=0.18, linewidth=0)
        data[layer] = {"steps": steps, "values": drawn[:, 0], "ci_low": drawn[:, 1], "ci_high": drawn[:, 2],
                       "n_seeds": n_seeds}
    if threshold is not None:
        ax.axhline(threshold, color="#777777", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.grid(True, color="#e4e4e4", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"held-out {metric}")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or f"{metric} of {targets[0]} over training (95% CI bands)")
    return _finish(fig, data, path)
