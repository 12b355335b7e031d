"""The leader's wake: a horseshoe vortex with Burnham–Hallock cores, sampled over the follower's span.

Positions are relative to the leader's wing centre (x forward, y to the left,
z up; metres). :meth:`WakeModel.point_upwash` and :meth:`WakeModel.span_upwash`
take numpy arrays and broadcast them, so one call labels a whole probe grid;
:meth:`WakeModel.follower_upwash` evaluates the same formula for one follower in
plain Python floats, which is what an environment step needs.

The model (derivations and numbers in ``docs/formation_flight.md``):

* Elliptic loading: the trailing vortices sit ``b0 = π/4 · b`` apart and carry
  ``Γ = W / (ρ V b0)`` (the leader's lift equals its weight).
* Horseshoe: a bound vortex along the leader's wing (x = 0, |y| ≤ b0/2) and two
  semi-infinite trailing legs from its ends to x → −∞ (Biot–Savart for straight
  segments), so the field depends on the distance behind the leader as well as
  on the lateral offset.
* Burnham–Hallock cores: the 2-D kernel ``1/h`` becomes ``h / (h² + rc²)``, so the
  velocity is finite everywhere, peaks at ``Γ / (4π rc)`` one core radius from a
  vortex axis and vanishes on it.
* The trailing legs descend under their mutual induction at ``Γ / (2π b0)``;
  their height behind the leader is ``−descent_rate · (−x) / V`` (wake age ``−x/V``).
  Decay and core growth are neglected: the wake is at most ~0.5 s old in the
  region that matters, far shorter than its decay time ``b0 / descent_rate`` (~10 s).
* The follower's upwash is the lift-weighted (elliptic) span average over
  ``n_stations`` Chebyshev stations, which is exactly the average that sets its
  induced-drag change: the follower saves ``W · w̄`` of power. The lift-weighted spanwise slope
  ``w ≈ w̄ + g·η`` sets the wake's rolling moment; in strip theory it rolls an
  unrestrained wing at ``2 g / b`` rad/s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from rli.errors import RliError

GRAVITY = 9.81
"""m/s², as in the reference toolkit (weight = 2.0 kg × 9.81)."""


class SpanUpwash(NamedTuple):
    """What the follower's wing sees, each an array broadcast from the positions given.

    ``mean``: lift-weighted span-averaged upwash (m/s), the quantity that sets the
    induced-drag saving. ``centre``: upwash at the follower's centre (m/s).
    ``gradient``: lift-weighted least-squares slope ``g`` of ``w ≈ mean + g·η`` over the
    normalised span ``η ∈ [−1, 1]`` (positive η = left wing), in m/s.
    """

    mean: np.ndarray
    centre: np.ndarray
    gradient: np.ndarray


@dataclass(frozen=True)
class WakeModel:
    """Leader wake of a fixed-wing aircraft and how a same-size follower samples it.

    Defaults are the reference's constants (1.5 m span, 2.0 kg, 15 m/s, sea-level
    air); the core radius is 10% of the span. ``n_stations`` (odd, so the centre is a
    station) sets the spanwise resolution of the follower's wing.

    Example:
        >>> import numpy as np
        >>> from rli.envs.wake import WakeModel
        >>> wake = WakeModel()
        >>> round(wake.vortex_spacing, 4), round(wake.circulation, 4)
        (1.1781, 0.9063)
        >>> w = wake.span_upwash(x=-3.0, y=np.array([0.0, 1.2, 3.0]), z=0.0).mean
        >>> bool(w[0] < 0 < w[2] < w[1])   # downwash behind, upwash beside, decays outboard
        True
    """

    wingspan: float = 1.5
    weight: float = 2.0 * GRAVITY
    airspeed: float = 15.0
    air_density: float = 1.225
    core_fraction: float = 0.1
    n_stations: int = 9
    _eta: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _weights: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _slope_weights: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _constants: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("wingspan", "weight", "airspeed", "air_density", "core_fraction"):
            if not getattr(self, name) > 0:
                raise RliError(f"WakeModel.{name} must be positive, got {getattr(self, name)!r}")
        if self.n_stations < 3 or self.n_stations % 2 == 0:
            raise RliError(f"WakeModel.n_stations must be odd and at least 3 (the centre is a station), "
                           f"got {self.n_stations}")
        # Gauss–Chebyshev (second kind) nodes and weights: exact for ∫ f(η) √(1−η²) dη, i.e. elliptic lift.
        theta = np.arange(1, self.n_stations + 1) * math.pi / (self.n_stations + 1)
        eta, weights = np.cos(theta), np.sin(theta) ** 2 / np.sum(np.sin(theta) ** 2)
        object.__setattr__(self, "_eta", tuple(eta.tolist()))
        object.__setattr__(self, "_weights", tuple(weights.tolist()))
        object.__setattr__(self, "_slope_weights", tuple((eta * weights / (weights @ eta**2)).tolist()))
        object.__setattr__(self, "_constants", (self.circulation / (4.0 * math.pi), 0.5 * self.vortex_spacing,
                                                self.core_radius**2, self.descent_rate / self.airspeed))

    # ------------------------------------------------------------ derived constants
    @property
    def vortex_spacing(self) -> float:
        """``b0 = π/4 · b`` (m): lateral distance between the trailing vortices (elliptic loading)."""
        return math.pi / 4.0 * self.wingspan

    @property
    def circulation(self) -> float:
        """``Γ = W / (ρ V b0)`` (m²/s): circulation of each trailing vortex."""
        return self.weight / (self.air_density * self.airspeed * self.vortex_spacing)

    @property
    def core_radius(self) -> float:
        """``rc = core_fraction · b`` (m): Burnham–Hallock core radius."""
        return self.core_fraction * self.wingspan

    @property
    def descent_rate(self) -> float:
        """``Γ / (2π b0)`` (m/s): sink rate of the vortex pair under its mutual induction."""
        return self.circulation / (2.0 * math.pi * self.vortex_spacing)

    @property
    def peak_velocity(self) -> float:
        """``Γ / (4π rc)`` (m/s): largest swirl velocity of one infinite cored vortex (at r = rc)."""
        return self.circulation / (4.0 * math.pi * self.core_radius)

    @property
    def induced_power(self) -> float:
        """``2 W² / (ρ V π b²)`` (W): the follower's induced power alone in still air (elliptic wing)."""
        return 2.0 * self.weight**2 / (self.air_density * self.airspeed * math.pi * self.wingspan**2)

    @property
    def stations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(η, weights)``: spanwise stations in [−1, 1] (η = 0 in the middle) and their lift weights (sum 1)."""
        return np.array(self._eta), np.array(self._weights)

    # ------------------------------------------------------------------ the field
    def point_upwash(self, x: Any, y: Any, z: Any) -> np.ndarray:
        """Vertical air velocity (m/s, up positive) at points relative to the leader's wing centre.

        Example:
            >>> from rli.envs.wake import WakeModel
            >>> wake = WakeModel()
            >>> bool(wake.point_upwash(-2.0, 0.0, 0.0) < 0 < wake.point_upwash(-2.0, 0.8, 0.0))
            True
        """
        x, y, z = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
        return _vertical_velocity(x, y, z, *self._constants, np.sqrt, np.maximum)

    def span_upwash(self, x: Any, y: Any, z: Any, bank: Any = 0.0) -> SpanUpwash:
        """The follower's lift-weighted span average, centre value and spanwise slope of the upwash.

        ``(x, y, z)`` is the follower's centre relative to the leader's and ``bank``
        its bank angle (rad, positive = left wing up): the stations lie at
        ``(x, y + η·b/2·cos φ, z + η·b/2·sin φ)``. Arrays broadcast; one call labels
        a whole grid.

        Example:
            >>> import numpy as np
            >>> from rli.envs.wake import WakeModel
            >>> seen = WakeModel().span_upwash(x=np.full(3, -2.0), y=[-1.2, 0.0, 1.2], z=0.0)
            >>> seen.mean.shape, bool(np.isclose(seen.mean[0], seen.mean[2]))
            ((3,), True)
        """
        x, y, z, bank = (np.asarray(v, dtype=np.float64)[..., None] for v in (x, y, z, bank))
        half = 0.5 * self.wingspan * np.array(self._eta)
        w = self.point_upwash(x, y + half * np.cos(bank), z + half * np.sin(bank))
        return SpanUpwash(w @ np.array(self._weights), w[..., self.n_stations // 2], w @ np.array(self._slope_weights))

    def follower_upwash(self, x: float, y: float, z: float, bank: float = 0.0) -> tuple[float, float, float]:
        """:meth:`span_upwash` for one follower, as ``(mean, centre, gradient)`` floats, without numpy.

        The same formula evaluated in plain Python: on one position it is a few
        times faster than the array path, which is what an environment step needs.

        Example:
            >>> from rli.envs.wake import WakeModel
            >>> wake = WakeModel()
            >>> mean, centre, gradient = wake.follower_upwash(-3.0, 1.2, 0.0)
            >>> abs(mean - float(wake.span_upwash(-3.0, 1.2, 0.0).mean)) < 1e-12
            True
        """
        half = 0.5 * self.wingspan
        dy, dz = half * math.cos(bank), half * math.sin(bank)
        k, s, rc2, sink = self._constants
        sqrt = math.sqrt
        w = [_vertical_velocity(x, y + eta * dy, z + eta * dz, k, s, rc2, sink, sqrt, max) for eta in self._eta]
        mean = sum(wi * ci for wi, ci in zip(w, self._weights))
        return mean, w[self.n_stations // 2], sum(wi * ci for wi, ci in zip(w, self._slope_weights))

    def power_saving(self, x: Any, y: Any, z: Any, bank: Any = 0.0) -> np.ndarray:
        """Induced-power saving ``W · w̄`` (W) of a follower at the given relative positions.

        The upwash tilts the follower's lift forward by ``w̄ / V``; the forward
        component ``W w̄ / V`` is thrust, worth ``W w̄`` of power at airspeed V.
        Negative in downwash (it costs power).

        Example:
            >>> from rli.envs.wake import WakeModel
            >>> wake = WakeModel()
            >>> bool(wake.power_saving(-3.0, 1.3, 0.0) / wake.induced_power > 0.4)
            True
        """
        return self.weight * self.span_upwash(x, y, z, bank).mean


def _vertical_velocity(x: Any, y: Any, z: Any, k: float, s: float, rc2: float, sink: float,
                       sqrt: Callable[[Any], Any], maximum: Callable[[Any, Any], Any]) -> Any:
    """The horseshoe's vertical velocity; arithmetic only, so it runs on floats (math) or arrays (numpy).

    ``k = Γ/4π``, legs at ``y = ±s``, ``rc2`` the squared core radius, ``sink`` the
    legs' descent per metre behind the leader.
    """
    behind = -x
    dz = z + sink * maximum(behind, 0.0)
    dz2 = dz * dz + rc2
    left, right = y - s, y + s  # offsets from the left leg (y = +s, upwash outboard of it) and the right leg
    h_left, h_right = left * left + dz2, right * right + dz2
    behind2 = behind * behind
    trailing = (left / h_left * (1.0 + behind / sqrt(behind2 + h_left))
                - right / h_right * (1.0 + behind / sqrt(behind2 + h_right)))
    rho2 = x * x + z * z + rc2
    bound = x / rho2 * (right / sqrt(right * right + rho2) - left / sqrt(left * left + rho2))
    return k * (trailing + bound)
