"""rl_interrogate's figures (``rl_interrogate.visualization``): same panels, titles, labels and files.

Each function draws the reference's figure and saves it to ``save_path``. The figures
are built on their own Agg canvas and never registered with ``pyplot``, so unlike the
reference these functions do not switch the process's matplotlib backend to Agg (a
notebook keeps showing its plots inline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_ablation_curve", "plot_pca_scatter", "plot_probe_heatmap"]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, save_path: str) -> None:
    fig.tight_layout()
    fig.savefig(save_path, bbox_inches="tight")


def plot_probe_heatmap(grid_x: np.ndarray, grid_y: np.ndarray, predicted_field: Any, true_field: Any,
                       save_path: str) -> None:
    """Probe-predicted and true field side by side over a 2-D grid, on one colour scale; saved to ``save_path``.

    ``grid_x`` and ``grid_y`` are (nx, ny) coordinate arrays; the fields are (nx·ny,) or
    (nx, ny). Panels "Probe-Predicted Field" and "True Field", axes "X (m)" and "Y (m)".

    Rigorous equivalent: ``rli.plots.probe_heatmap(rli.probe(policy, grid, "upwash", layer), grid,
    policy=policy)`` — every grid point predicted by the cross-validation fold model that did not see it.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from rli.compat import plot_probe_heatmap
        >>> gx, gy = np.meshgrid(np.linspace(-6, 0, 8), np.linspace(-3, 3, 12), indexing="ij")
        >>> path = os.path.join(tempfile.mkdtemp(), "heatmap.png")
        >>> plot_probe_heatmap(gx, gy, np.sin(gy).ravel(), np.sin(gy), path)
        >>> os.path.getsize(path) > 0
        True
    """
    grid_x, grid_y = np.asarray(grid_x), np.asarray(grid_y)
    fields = [np.asarray(field).reshape(grid_x.shape) for field in (predicted_field, true_field)]
    extent = [float(grid_x.min()), float(grid_x.max()), float(grid_y.min()), float(grid_y.max())]
    low, high = min(f.min() for f in fields), max(f.max() for f in fields)
    fig = _figure(12, 5)
    for ax, field, title in zip(fig.subplots(1, 2), fields, ("Probe-Predicted Field", "True Field")):
        image = ax.imshow(field.T, origin="lower", extent=extent, aspect="auto", cmap="RdBu_r", vmin=low, vmax=high)
        ax.set_title(title)
        ax.set_xlabel("X (m)")
        ax.set_ylabel("Y (m)")
        fig.colorbar(image, ax=ax)
    _save(fig, save_path)


def plot_ablation_curve(alphas: Sequence[float], metrics: Any, labels: Sequence[Any], save_path: str) -> None:
    """One line per k: ``metrics[i]`` against ``alphas``, labelled ``labels[i]``; saved to ``save_path``.

    Axes "Alpha" and "Metric", title "Subspace Ablation Curve", legend titled "k".

    Rigorous equivalent: ``rli.plots.ablation_curve(rli.ablation_curve(policy, env, layer, obs,
    alphas=[...]))`` — relative drop in return from paired episodes, with its 95% CI band.

    Example:
        >>> import os, tempfile
        >>> from rli.compat import plot_ablation_curve
        >>> path = os.path.join(tempfile.mkdtemp(), "curve.png")
        >>> plot_ablation_curve([0.0, 0.5, 1.0], [[0.8, 0.9, 1.0], [0.5, 0.7, 1.0]], [1, 5], path)
        >>> os.path.getsize(path) > 0
        True
    """
    fig = _figure(8, 5)
    ax = fig.subplots()
    for row, label in zip(metrics, labels):
        ax.plot(alphas, row, marker="o", label=str(label))
    ax.set_xlabel("Alpha")
    ax.set_ylabel("Metric")
    ax.set_title("Subspace Ablation Curve")
    ax.legend(title="k")
    ax.grid(True, alpha=0.3)
    _save(fig, save_path)


def plot_pca_scatter(activations_2d: Any, color_values: Any, save_path: str) -> None:
    """Scatter of 2-D projected activations (N, 2) coloured by ``color_values`` (N,); saved to ``save_path``.

    Axes "PC1" and "PC2", title "PCA Scatter of Activations", colour bar "Value".

    Rigorous equivalent: ``rli.plots.pca_scatter(acts, target)`` — axes labelled with each
    direction's share of variance.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from rli.compat import plot_pca_scatter
        >>> points = np.random.default_rng(0).normal(size=(50, 2))
        >>> path = os.path.join(tempfile.mkdtemp(), "scatter.png")
        >>> plot_pca_scatter(points, points[:, 0], path)
        >>> os.path.getsize(path) > 0
        True
    """
    points, colors = np.asarray(activations_2d), np.asarray(color_values)
    fig = _figure(7, 6)
    ax = fig.subplots()
    dots = ax.scatter(points[:, 0], points[:, 1], c=colors, cmap="coolwarm", s=4, alpha=0.6)
    fig.colorbar(dots, ax=ax, label="Value")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title("PCA Scatter of Activations")
    _save(fig, save_path)
