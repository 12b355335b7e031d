"""Figures of attributions: share bars with CIs, overlays on image frames, the frames of extreme value.

Built like :mod:`rli.plots`: matplotlib ``Figure`` objects on the Agg canvas, never registered with
``pyplot`` (nothing to close, no display needed); matplotlib is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rli.attribution import AttributionResult, attribute
from rli.errors import RliError
from rli.plots import new_figure
from rli.policy import Policy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAIN = "#1f4e9c"


def attribution_bars(result: AttributionResult, *, top: int = 20, title: str | None = None) -> Figure:
    """Horizontal bars: each region's share of |attribution| with its 95% CI, largest first (at most ``top``).

    Example:
        >>> import torch.nn as nn, numpy as np, rli
        >>> from rli.attribution import attribute
        >>> result = attribute(rli.load_policy(nn.Linear(3, 1)), np.ones((4, 3), np.float32), target="action:0")
        >>> len(attribution_bars(result).axes)
        1
    """
    if not isinstance(result, AttributionResult):
        raise RliError(f"attribution_bars takes an AttributionResult (from rli.attribution.attribute), not "
                       f"{type(result).__name__}")
    shares = sorted(result.shares.values(), key=lambda s: -s.share)[:top]
    fig = new_figure(5.5, 0.8 + 0.28 * len(shares))
    ax = fig.add_subplot()
    values = np.array([s.share for s in shares])
    low = np.array([s.ci[0] for s in shares])
    high = np.array([s.ci[1] for s in shares])
    err = np.vstack([values - low, high - values])
    err = np.where(np.isfinite(err), err, 0.0)
    y = np.arange(len(shares))[::-1]
    ax.barh(y, values, color=_MAIN, xerr=err, capsize=2, error_kw={"linewidth": 0.8})
    ax.set_yticks(y, [s.name for s in shares])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of |attribution| (mean over groups, 95% CI)")
    ax.set_title(title or f"{result.method} attribution of {result.target}")
    return fig


def _frame_maps(result: AttributionResult, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (image H × W, attribution magnitude H × W) in the frames' own layout."""
    maps = np.abs(result.attributions)
    images = np.asarray(frames, dtype=np.float64)
    if images.ndim != 4 or images.shape[0] != maps.shape[0]:
        raise RliError(f"frames must be the {maps.shape[0]} image observations that were attributed, shape (n, C, H, W) "
                       f"or (n, H, W, C); got {images.shape}")
    last = images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4)
    if last:
        images = np.transpose(images, (0, 3, 1, 2))
    if maps.ndim == 4:
        maps = np.transpose(maps, (0, 3, 1, 2)) if last else maps
        maps = maps.sum(axis=1)
    gray = images.mean(axis=1)
    if maps.shape != gray.shape:
        raise RliError(f"attribution maps of shape {maps.shape[1:]} do not fit frames of height × width "
                       f"{gray.shape[1:]}; pass the frames that were attributed")
    return gray, maps


def attribution_overlay(result: AttributionResult, frames: Any, *, rows: Any = None, alpha: float = 0.6) -> Figure:
    """Each chosen frame (grey) under its attribution magnitude (summed over channels), one panel per row.

    ``rows``: indices of the rows to show (default the first six).
    """
    gray, maps = _frame_maps(result, frames)
    chosen = list(range(min(6, len(gray)))) if rows is None else [int(r) for r in np.atleast_1d(rows)]
    if not chosen or max(chosen) >= len(gray) or min(chosen) < -len(gray):
        raise RliError(f"rows must index the {len(gray)} attributed frames, got {rows!r}")
    fig = new_figure(2.0 * len(chosen), 2.3)
    for i, row in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), i + 1)
        ax.imshow(gray[row], cmap="gray")
        ax.imshow(maps[row], cmap="inferno", alpha=alpha)
        ax.set_title(f"row {row}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{result.method} attribution of {result.target}")
    return fig


def extreme_frames(policy: Policy, frames: Any, *, scores: Any = None, k: int = 4) -> Figure:
    """The ``k`` frames of highest and of lowest score: the critic's value by default, or ``scores`` (e.g. advantages).

    Values come from the same differentiated function :func:`rli.attribution.attribute` uses
    (``target="value"``), so they are the critic's output on the raw frames as given.
    """
    arr = policy.prepare_obs(frames)
    if len(policy.obs_shape) != 3:
        raise RliError(f"extreme_frames shows image observations; this policy takes {policy.obs_shape}")
    if scores is None:
        values = attribute(policy, arr, target="value", method="saliency").outputs
        label = "value"
    else:
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        label = "score"
        if values.shape != (arr.shape[0],) or not np.all(np.isfinite(values)):
            raise RliError(f"scores must be {arr.shape[0]} finite numbers, one per frame; got shape {values.shape}")
    if not 1 <= k <= arr.shape[0] // 2:
        raise RliError(f"k must be between 1 and half the number of frames ({arr.shape[0] // 2}), got {k}")
    order = np.argsort(values, kind="stable")
    picks = [("highest", order[::-1][:k]), ("lowest", order[:k])]
    images = arr.astype(np.float64)
    if images.shape[-1] in (1, 3, 4) and images.shape[1:] != policy.obs_shape:
        images = np.transpose(images, (0, 3, 1, 2))
    fig = new_figure(2.0 * k, 4.4)
    for r, (name, rows) in enumerate(picks):
        for c, row in enumerate(rows):
            ax = fig.add_subplot(2, k, r * k + c + 1)
            frame = images[row]
            shown = frame[0] if frame.shape[0] == 1 else np.transpose(frame[:3], (1, 2, 0)) / max(frame.max(), 1.0)
            ax.imshow(shown, cmap="gray" if frame.shape[0] == 1 else None)
            ax.set_title(f"{name}: {label} {values[row]:.3g}", fontsize=8)
            ax.set_axis_off()
    return fig
