"""rl_interrogate's polarity tests (``rl_interrogate.polarity``) on rli's capture engine.

:class:`PolarityTest` fits ``Ridge(alpha=1.0)`` on the normal activations of one seeded
80/20 split and scores it on the held-out rows, then on the same rows with the sensors
negated. :func:`ddpg_polarity_test` scores a fixed probe direction, unfitted, before and
after negating one sensor of an SB3 DDPG/TD3 actor, and checks the actor's parameters
did not change meanwhile. Both return the reference's plain dicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from torch import nn

from rli.capture import capture
from rli.compat.engine import extract_activations
from rli.loading.torch_networks import module_network
from rli.polarity import negate_sensors
from rli.policy import Policy

__all__ = ["PolarityTest", "ddpg_polarity_test"]


def _negated(dataset: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """A copy of ``dataset`` with column ``i`` negated once per time ``i`` is listed (twice restores it)."""
    width = dataset.shape[1]
    for i in indices:
        if not -width <= i < width:
            raise IndexError(f"observation index {i} is out of bounds for observations of {width} values")
    counts = Counter(int(i) % width for i in indices)
    odd = sorted(i for i, count in counts.items() if count % 2)
    return negate_sensors(dataset, odd) if odd else np.array(dataset, copy=True)


class PolarityTest:
    """Probe R² on normal observations, and of the same probe with ``obs_indices_to_negate`` negated.

    Same signature and results as ``rl_interrogate.PolarityTest``: :meth:`run` fits
    ``Ridge(alpha=1.0)`` on 80% of the normal activations (split with ``random_state=42``)
    and returns ``{"r2_normal", "r2_inverted", "delta_r2"}`` (``delta_r2 = r2_inverted −
    r2_normal``) for the held-out 20%, normal and inverted. An index listed twice is
    negated twice, i.e. not at all, as in the reference.

    Rigorous equivalent: ``rli.polarity_test(policy, obs, y, sensors, layer)`` — K-fold CV, the drop
    with a 95% CI over paired folds, a probe refitted on inverted inputs and whether it flipped
    sign; parameters fingerprinted before and after.

    Example:
        >>> import numpy as np, torch, torch.nn as nn
        >>> from rli.compat import PolarityTest
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
        >>> x = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
        >>> result = PolarityTest(net, [0], x).run(1, x[:, 0])
        >>> sorted(result), result["r2_normal"] > 0.95, result["delta_r2"] < -1
        (['delta_r2', 'r2_inverted', 'r2_normal'], True, True)
    """

    def __init__(self, model: nn.Module, obs_indices_to_negate: list[int], dataset: np.ndarray) -> None:
        self._model = model
        self._indices = obs_indices_to_negate
        self._dataset = dataset
        self._dataset_inv = _negated(dataset, obs_indices_to_negate)

    def run(self, layer_idx: int, labels: np.ndarray) -> dict:
        """Fit on normal activations of ``model[layer_idx]``; score on held-out normal and inverted rows."""
        normal = extract_activations(self._model, layer_idx, self._dataset)
        inverted = extract_activations(self._model, layer_idx, self._dataset_inv)
        train, test, _, inverted_test, y_train, y_test = train_test_split(
            normal, inverted, labels, test_size=0.2, random_state=42)
        probe = Ridge(alpha=1.0).fit(train, y_train)  # default BLAS threads, as the reference (same rounding)
        r2_normal = float(probe.score(test, y_test))
        r2_inverted = float(probe.score(inverted_test, y_test))
        return {"r2_normal": r2_normal, "r2_inverted": r2_inverted, "delta_r2": r2_inverted - r2_normal}


def ddpg_polarity_test(
    policy: Any,
    obs_batch: np.ndarray,
    sensor_idx: int,
    probe_direction: np.ndarray,
    layer_name: str,
) -> dict:
    """Representation-level polarity test of an SB3 DDPG/TD3 actor, as ``rl_interrogate.polarity.ddpg_polarity_test``.

    Activations of ``layer_name`` (a module name inside ``actor.mu``) are projected on the
    unit-normalised ``probe_direction`` for ``obs_batch`` and for ``obs_batch`` with
    ``sensor_idx`` negated; each projection's R² against the sensor's values is reported
    (no probe is fitted: the projection itself is the prediction). ``AssertionError`` if
    the actor's parameters changed during the test. Returns ``delta_r2``, ``pre_r2``,
    ``post_r2``, ``sign_flip`` (``post_r2 < 0``), ``gamma`` (``|delta_r2|``) and the arrays
    ``sensor_vals``, ``proj_pre``, ``proj_post``.

    Rigorous equivalent: ``rli.polarity_test(rli.load_policy(model), obs, target, [sensor_idx], layer)``
    — a fitted, cross-validated probe with a CI on the drop and a refit that shows the flip.

    Example:
        >>> import numpy as np, warnings
        >>> from stable_baselines3 import TD3
        >>> from rli.compat.polarity import ddpg_polarity_test
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8, 8]}, seed=0, device="cpu")
        >>> obs = np.random.default_rng(0).uniform(-1, 1, size=(200, 3)).astype(np.float32)
        >>> out = ddpg_polarity_test(model.policy, obs, 2, np.ones(8), "1")
        >>> out["gamma"] == abs(out["delta_r2"]), out["proj_pre"].shape
        (True, (200,))
    """
    actor = getattr(policy, "actor", policy)
    prefix = "mu." if hasattr(actor, "mu") else ""
    direction = np.asarray(probe_direction, dtype=float)
    norm = float(np.linalg.norm(direction))
    if norm > 1e-12:
        direction = direction / norm
    obs_batch = np.asarray(obs_batch)
    engine = Policy(module_network(actor, obs_shape=tuple(obs_batch.shape[1:])), source=f"<{type(actor).__name__}>")
    layer = engine.layer(prefix + layer_name)
    before = engine.fingerprint
    h_pre = capture(engine, obs_batch.astype(np.float32), [layer])[layer.name]
    negated = obs_batch.copy()
    negated[:, sensor_idx] = -negated[:, sensor_idx]
    h_post = capture(engine, negated.astype(np.float32), [layer])[layer.name]
    if engine.fingerprint != before:
        raise AssertionError("Policy actor parameters changed during ddpg_polarity_test")
    if h_pre.shape[1] != direction.shape[0]:
        raise ValueError(f"Probe direction dim {direction.shape[0]} != hidden dim {h_pre.shape[1]}")
    sensor_vals = obs_batch[:, sensor_idx]
    proj_pre, proj_post = h_pre @ direction, h_post @ direction
    pre_r2, post_r2 = float(r2_score(sensor_vals, proj_pre)), float(r2_score(sensor_vals, proj_post))
    delta_r2 = post_r2 - pre_r2
    return {"delta_r2": float(delta_r2), "pre_r2": pre_r2, "post_r2": post_r2, "sign_flip": bool(post_r2 < 0),
            "gamma": float(abs(delta_r2)), "sensor_vals": sensor_vals, "proj_pre": proj_pre, "proj_post": proj_post}
