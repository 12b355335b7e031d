"""rl_interrogate's probes (``rl_interrogate.probing``) on rli's capture engine.

The reference protocol, reproduced number for number: activations of ``model[layer_idx]``
for every observation, one seeded 80/20 ``train_test_split``, then ``Ridge(alpha=1.0)``,
``LassoCV(cv=5)`` or ``MLPRegressor((128,))`` fitted on the 80% and scored (R²) on the
20%. The activations come from :func:`rli.capture` (large chunks, forward pass stopped
at the probed layer, hooks always removed); the estimators are scikit-learn's, fitted
on the same arrays, so a paper's table reproduces exactly. ``probe._probe`` is the
fitted scikit-learn estimator, as in the reference (``probe._probe.coef_``).

A single split and a fixed penalty give one number with no error bar and nothing to
compare it to; :func:`rli.probe` gives the held-out score with K-fold cross-validation,
a 95% CI and the untrained-network, shuffled-label and raw-observation controls.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from sklearn.linear_model import LassoCV, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from torch import nn

from rli.compat.engine import extract_activations

__all__ = ["LassoProbe", "LinearProbe", "MLPProbe", "UntrainedBaseline"]

_Probe = TypeVar("_Probe", bound="_HeldOutProbe")

def _split_fit_score(make: Callable[[], Any], x: Any, y: Any, test_size: float, seed: int,
                     quiet: bool = False) -> tuple[Any, float]:
    """The reference protocol: one seeded ``train_test_split``, fit on the train part, R² on the held-out part.

    BLAS keeps its default threads, as in the reference: a float32 fit rounds differently on
    one thread than on two (coefficients 7.6e-6 apart, MLP R² 1.3e-3 apart, measured), so a
    one-thread limit would break "same numbers" for a small speed gain on a busy machine.
    """
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed)
    with warnings.catch_warnings():
        if quiet:  # the reference silences convergence warnings of LassoCV and the MLP
            warnings.simplefilter("ignore")
        estimator = make().fit(x_train, y_train)
        return estimator, float(estimator.score(x_test, y_test))


class _HeldOutProbe(abc.ABC):
    """What the three reference probes share: ``fit`` on a model, ``fit_score`` on arrays, ``score``."""

    def __init__(self) -> None:
        self._probe: Any = None
        self._r2: float | None = None

    def fit(self: _Probe, model: nn.Module, layer_idx: int, obs_dataset: Any, labels: np.ndarray,
            test_size: float = 0.2, seed: int = 42) -> _Probe:
        """Capture the activations of ``model[layer_idx]`` on ``obs_dataset`` and fit the probe on them.

        ``obs_dataset`` is a numpy array or a torch tensor (n, obs_dim); ``labels`` has
        one value per observation; ``test_size`` and ``seed`` define the split. Returns
        ``self``; :meth:`score` gives the held-out result.
        """
        self.fit_score(extract_activations(model, layer_idx, obs_dataset), labels, test_size=test_size, seed=seed)
        return self

    @abc.abstractmethod
    def fit_score(self, X: Any, y: Any, test_size: float = 0.2, seed: int = 42) -> Any:  # noqa: N803 (reference API)
        """Fit on a seeded split of ``X`` (activations) and ``y``; the held-out score (each probe defines it)."""

    def score(self) -> Any:
        """Held-out R² of the last :meth:`fit` or :meth:`fit_score` (``RuntimeError`` before any fit)."""
        if self._r2 is None:
            raise RuntimeError("Call fit() before score().")
        return self._r2


class LinearProbe(_HeldOutProbe):
    """Ridge probe (``alpha=1.0``) scored on one seeded 80/20 split, as ``rl_interrogate.LinearProbe``.

    Rigorous equivalent: ``rli.probe(policy, obs, y, layer, kind="ridge")`` — K-fold CV with the
    penalty chosen inside each training fold, a 95% CI, untrained/shuffled/raw-observation controls.

    Example:
        >>> import numpy as np, torch, torch.nn as nn
        >>> from rli.compat import LinearProbe
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
        >>> obs = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
        >>> probe = LinearProbe().fit(net, 1, obs, obs[:, 0] - obs[:, 1])
        >>> probe.score() > 0.98, probe._probe.coef_.shape
        (True, (32,))
    """

    def __init__(self) -> None:
        super().__init__()
        self._activations: np.ndarray | None = None

    def fit(self, model: nn.Module, layer_idx: int, obs_dataset: Any, labels: np.ndarray,
            test_size: float = 0.2, seed: int = 42) -> LinearProbe:
        """Capture the activations of ``model[layer_idx]`` (kept in ``_activations``) and fit the ridge probe.

        ``obs_dataset`` is a numpy array or a torch tensor (n, obs_dim); ``labels`` has
        one value per observation; ``test_size`` and ``seed`` define the split. Returns
        ``self``; :meth:`score` gives the held-out R².
        """
        self._activations = extract_activations(model, layer_idx, obs_dataset)
        self.fit_score(self._activations, labels, test_size=test_size, seed=seed)
        return self

    def score(self) -> float:
        """Held-out R² of the last fit (``RuntimeError`` before any fit)."""
        return super().score()

    def fit_score(self, X: Any, y: Any, test_size: float = 0.2, seed: int = 42) -> float:  # noqa: N803 (reference API)
        """Fit ``Ridge(alpha=1.0)`` on a seeded split of activations ``X`` (n, d) and return the held-out R²."""
        self._probe, self._r2 = _split_fit_score(lambda: Ridge(alpha=1.0), X, y, test_size, seed)
        return self._r2


class MLPProbe(_HeldOutProbe):
    """One hidden layer of 128 ReLU units (``MLPRegressor``, ``max_iter=500``, seeded), as ``rl_interrogate.MLPProbe``.

    Rigorous equivalent: ``rli.probe(policy, obs, y, layer, kind="mlp")`` — standardised inputs and
    targets, early stopping, K-fold CV, a 95% CI and controls.

    Example:
        >>> import numpy as np
        >>> from rli.compat import MLPProbe
        >>> x = np.random.default_rng(0).normal(size=(400, 3))
        >>> r2 = MLPProbe().fit_score(x, np.sin(x[:, 0]) * x[:, 1])
        >>> 0.5 < r2 <= 1.0
        True
    """

    def score(self) -> float:
        """Held-out R² of the last fit (``RuntimeError`` before any fit)."""
        return super().score()

    def fit_score(self, X: Any, y: Any, test_size: float = 0.2, seed: int = 42) -> float:  # noqa: N803 (reference API)
        """Fit the MLP probe on a seeded split of activations ``X`` (n, d) and return the held-out R²."""
        self._probe, self._r2 = _split_fit_score(
            lambda: MLPRegressor(hidden_layer_sizes=(128,), activation="relu", max_iter=500, random_state=seed),
            X, y, test_size, seed, quiet=True)
        return self._r2


class LassoProbe(_HeldOutProbe):
    """Sparse probe: ``LassoCV(cv=5)`` on one seeded 80/20 split, as ``rl_interrogate.LassoProbe``.

    ``score()`` and ``fit_score()`` return ``(R², number of non-zero coefficients)``.

    Rigorous equivalent: ``rli.probe(policy, obs, y, layer, kind="lasso")`` — K-fold CV (penalty chosen
    inside each training fold), a 95% CI, controls, and ``n_nonzero`` of the final fit.

    Example:
        >>> import numpy as np
        >>> from rli.compat import LassoProbe
        >>> x = np.random.default_rng(0).normal(size=(300, 20))
        >>> r2, used = LassoProbe().fit_score(x, x[:, 0] + 0.5 * x[:, 3])
        >>> r2 > 0.99, used < 10
        (True, True)
    """

    def __init__(self) -> None:
        super().__init__()
        self._n_nonzero: int | None = None

    def score(self) -> tuple[float, int | None]:
        """``(held-out R², non-zero coefficients)`` of the last fit (``RuntimeError`` before any fit)."""
        return super().score(), self._n_nonzero

    def fit_score(self, X: Any, y: Any, test_size: float = 0.2,  # noqa: N803 (reference API)
                  seed: int = 42) -> tuple[float, int]:
        """Fit ``LassoCV(cv=5)`` on a seeded split of ``X`` (n, d); return ``(held-out R², non-zero coefficients)``."""
        self._probe, self._r2 = _split_fit_score(lambda: LassoCV(cv=5), X, y, test_size, seed, quiet=True)
        self._n_nonzero = int(np.count_nonzero(self._probe.coef_))
        return self._r2, self._n_nonzero


class UntrainedBaseline:
    """The :class:`LinearProbe` score of a freshly initialised ``model_class(**model_kwargs)``.

    The model is built with the global torch RNG as it stands (seed it with
    ``torch.manual_seed`` to get the reference's numbers), put in eval mode and probed
    at ``layer_idx``. One initialisation, no error bar.

    Rigorous equivalent: the ``"untrained"`` control of ``rli.probe(policy, obs, y, layer)`` — the same
    network re-initialised under several seeds, same folds, reported beside the score and in ``selectivity``.

    Example:
        >>> import numpy as np, torch, torch.nn as nn
        >>> from rli.compat import UntrainedBaseline
        >>> def make(width):
        ...     return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 2))
        >>> _ = torch.manual_seed(0)
        >>> x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
        >>> result = UntrainedBaseline().run(make, {"width": 16}, 1, x, x[:, 0])
        >>> list(result), result[1] > 0.9
        ([1], True)
    """

    def run(self, model_class: Callable[..., nn.Module], model_kwargs: dict, layer_idx: int, obs_dataset: Any,
            labels: np.ndarray) -> dict[int, float]:
        """Build ``model_class(**model_kwargs)`` (default init), probe ``layer_idx`` → ``{layer_idx: R²}``."""
        model = model_class(**model_kwargs)
        model.eval()
        return {layer_idx: LinearProbe().fit(model, layer_idx, obs_dataset, labels).score()}
