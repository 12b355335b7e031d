"""``rli/FormationFlight-v0``: a follower aircraft saving energy in its leader's wake.

The leader flies along +x at 15 m/s and 10 m altitude (with gentle, seeded
lateral and vertical weaves). The follower is a point mass whose inner-loop
autopilot tracks velocity commands with a first-order lag; its wings sample the
leader's wake (:class:`rli.envs.wake.WakeModel`) at nine spanwise stations. Upwash
on its wing tilts its lift forward and saves induced power; downwash costs power.
Positions are in the *formation frame*, which travels over the ground at the
nominal airspeed along the flight track: x forward, y to the left, z up
(altitude); the leader's nominal position is (0, 0, 10).

Observation (28 × float32; ``OBS_NAMES`` names each index):

====  ==================  ====  ===========================================================
idx   name                unit  meaning
====  ==================  ====  ===========================================================
0     airspeed_dev        m/s   airspeed − 15 (air data)
1     vel_y               m/s   lateral ground velocity (formation frame, with gusts)
2     vel_z               m/s   climb rate (with gusts)
3     bank                rad   bank angle, positive = left wing up
4     roll_rate           rad/s roll rate
5     track               rad   ground-track angle ``atan2(vel_y, 15 + vel_x)``
6–8   rel_vel_x/y/z       m/s   follower velocity − leader velocity
9–11  rel_x/y/z           m     follower position − leader position
12    upwash_sensor       m/s   span-averaged upwash + N(0, ``sensor_noise``²)
13    distance            m     distance to the leader
14–16 pos_x/y/z           m     follower position (formation frame; 16 = altitude)
17–20 prev_action_0..3    –     the action just applied (clipped to [−1, 1])
21    energy_error        m     specific-energy error ``(z − 10) + (V_a² − 15²) / 2g``
22–25 sensor_lag_1..4     m/s   the upwash-sensor readings 1, 2, 3, 4 steps ago
26    flight_path         rad   flight-path angle ``atan2(vel_z, ground speed)``
27    sensor_filtered     m/s   upwash sensor, exponentially filtered (τ = 0.25 s)
====  ==================  ====  ===========================================================

Action (4 values in [−1, 1], clipped): 0 = airspeed change command (±2 m/s),
1 = lateral velocity command (±2 m/s), 2 = climb-rate command (±1 m/s),
3 = roll-rate command (±1 rad/s, on top of a wing-leveller).

Reward per step (all terms documented in ``docs/formation_flight.md``)::

    W·w̄ / P_i − tan²(bank)                  energy: induced power saved by the wake, minus banking cost
    − 0.5 · min(envelope_error, 6)           outside the formation envelope x∈[−4,−1], |y|≤3, |z|≤0.5 m
    − 3 · max(0, 1 − distance / 1.5)         inside the collision zone (closer than one wingspan)
    − 0.1 · mean(action²)                    control effort
    − 20 once, and the episode terminates,   on a crash (ground, or closer than 0.5 m to the leader)

Episodes are truncated at 400 steps (20 s) by the registration. ``render_mode="rgb_array"``
gives a top view; ``probe_grid()`` builds the reference's labelled probe grid.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from rli.envs.wake import GRAVITY, WakeModel
from rli.errors import RliError
from rli.observations import ObsSet

DT = 0.05
"""Step length (s); 400 steps (the registered limit) are 20 s of flight."""
TARGET_ALTITUDE = 10.0
"""Leader's nominal altitude (m)."""
OBS_NAMES = (
    "airspeed_dev", "vel_y", "vel_z", "bank", "roll_rate", "track",
    "rel_vel_x", "rel_vel_y", "rel_vel_z", "rel_x", "rel_y", "rel_z",
    "upwash_sensor", "distance", "pos_x", "pos_y", "pos_z",
    "prev_action_0", "prev_action_1", "prev_action_2", "prev_action_3",
    "energy_error", "sensor_lag_1", "sensor_lag_2", "sensor_lag_3", "sensor_lag_4",
    "flight_path", "sensor_filtered",
)
"""Name of each observation index (see the module docstring for units and meaning)."""
REL_X, REL_Y, DISTANCE, POS_X, POS_Y, POS_Z = 9, 10, 13, 14, 15, 16
"""Indices the probe grid sets (the reference's layout: 9–11 relative and 14–16 absolute position)."""

COMMAND_LIMITS = (2.0, 2.0, 1.0, 1.0)
"""Action ±1 maps to: airspeed change (m/s), lateral velocity (m/s), climb rate (m/s), roll rate (rad/s)."""
VELOCITY_LAG = 0.3
"""Time constant (s) of the autopilot's first-order response to velocity commands."""
ROLL_LAG = 0.1
"""Time constant (s) of the roll-rate response."""
WING_LEVELLER = 2.0
"""Roll-rate command (rad/s per rad of bank) the autopilot adds to bring the wings level."""
WING_AREA, PARASITE_DRAG = 0.3, 0.03
"""Follower wing area (m², aspect ratio 7.5) and zero-lift drag coefficient (power bookkeeping only)."""
SENSOR_FILTER = 0.25
"""Time constant (s) of the filtered sensor at index 27."""

ENVELOPE = ((-4.0, -1.0), (-3.0, 3.0), (-0.5, 0.5))
"""Formation envelope: (min, max) of the follower's position relative to the leader in x, y, z (m)."""
START_BOX = ((-6.0, -2.0), (-3.0, 3.0))
"""Reset draws the follower's relative x and y uniformly in these ranges (m)."""
START_ALTITUDE_SPREAD = 0.2
"""Reset draws the follower's altitude uniformly in 10 ± this (m)."""
COLLISION_RADIUS = 1.5
"""Collision zone: closer to the leader than this (one wingspan, m)."""
CONTACT_RADIUS = 0.5
"""Closer than this (m) is a mid-air collision: the episode terminates."""
ENERGY_WEIGHT, ENVELOPE_WEIGHT, ENVELOPE_CAP = 1.0, 0.5, 6.0
COLLISION_WEIGHT, ACTION_WEIGHT, CRASH_PENALTY = 3.0, 0.1, 20.0

_NOISE_BLOCK = 512


class FormationFlightEnv(gym.Env[np.ndarray, np.ndarray]):
    """A follower keeping formation behind a leader and surfing its wake; see the module docstring.

    Parameters: ``wake`` (the leader's wake and both aircraft's constants,
    :class:`WakeModel` defaults = the reference's), ``sensor_noise`` (σ of the
    upwash sensor, m/s), ``gust_std`` and ``gust_time`` (Ornstein–Uhlenbeck
    turbulence per axis: stationary σ in m/s and correlation time in s),
    ``leader_manoeuvres`` (seeded weaves of the leader: lateral amplitude up to
    1 m, vertical up to 0.3 m, periods 8–16 s).

    ``reset(options={"start": (x, y, z)})`` places the follower at that position
    relative to the leader instead of drawing it.

    Example:
        >>> import gymnasium as gym, rli
        >>> env = gym.make("rli/FormationFlight-v0")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, obs.dtype, env.action_space.shape
        ((28,), dtype('float32'), (4,))
        >>> bool(abs(obs[9] - info["rel_x"]) < 1e-5), info["in_collision_zone"]
        (True, 0)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> -1.0 < info["true_upwash"] < 1.0
        True
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / DT)}  # noqa: RUF012 — gym.Env declares metadata an instance attribute: a ClassVar fails mypy

    def __init__(self, *, wake: WakeModel | None = None, sensor_noise: float = 0.05, gust_std: float = 0.25,
                 gust_time: float = 1.0, leader_manoeuvres: bool = True, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise RliError(f"FormationFlight-v0 renders only 'rgb_array' (or None); got render_mode={render_mode!r}")
        if sensor_noise < 0 or gust_std < 0 or gust_time <= 0:
            raise RliError(f"sensor_noise and gust_std must be >= 0 and gust_time > 0; got {sensor_noise}, "
                           f"{gust_std}, {gust_time}")
        self.render_mode = render_mode
        self.wake = wake if wake is not None else WakeModel()
        self.sensor_noise = float(sensor_noise)
        self.gust_std = float(gust_std)
        self.gust_time = float(gust_time)
        self.leader_manoeuvres = bool(leader_manoeuvres)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (len(OBS_NAMES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

        wake = self.wake
        self._v = wake.airspeed
        self._induced = wake.induced_power
        self._parasite = 0.5 * wake.air_density * WING_AREA * PARASITE_DRAG
        self._velocity_gain = 1.0 - math.exp(-DT / VELOCITY_LAG)
        self._roll_gain = 1.0 - math.exp(-DT / ROLL_LAG)
        self._filter_gain = 1.0 - math.exp(-DT / SENSOR_FILTER)
        self._gust_decay = math.exp(-DT / self.gust_time)
        self._gust_kick = self.gust_std * math.sqrt(1.0 - self._gust_decay**2)
        self._half_span = 0.5 * wake.wingspan
        self._background: np.ndarray | None = None

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: leader weave, follower position, gusts and the sensor-noise stream are drawn from ``seed``."""
        super().reset(seed=seed)
        rng = self.np_random
        if self.leader_manoeuvres:
            self._weave = (rng.uniform(0.0, 1.0), 2 * math.pi / rng.uniform(8.0, 16.0), rng.uniform(0.0, 2 * math.pi),
                           rng.uniform(0.0, 0.3), 2 * math.pi / rng.uniform(8.0, 16.0), rng.uniform(0.0, 2 * math.pi))
        else:
            self._weave = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self._time = 0.0
        self._leader_motion()
        start = (options or {}).get("start")
        if start is None:
            self._x = rng.uniform(*START_BOX[0])
            self._y = self._leader_y + rng.uniform(*START_BOX[1])
            self._z = TARGET_ALTITUDE + rng.uniform(-START_ALTITUDE_SPREAD, START_ALTITUDE_SPREAD)
        else:
            rel = [float(v) for v in start]
            if len(rel) != 3:
                raise RliError(f"options['start'] must be the follower's (x, y, z) relative to the leader, got {start!r}")
            self._x, self._y, self._z = rel[0], self._leader_y + rel[1], self._leader_z + rel[2]
        self._gust = [self.gust_std * float(g) for g in rng.standard_normal(3)]
        self._command = [0.0, 0.0, 0.0]
        self._bank = self._roll_rate = 0.0
        self._action = (0.0, 0.0, 0.0, 0.0)
        self._sensor_draw = float(rng.standard_normal())
        self._noise = rng.standard_normal((_NOISE_BLOCK, 4)).tolist()
        self._noise_at = 0
        self._sense()
        self._lags = [self._reading] * 4
        self._filtered = self._reading
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Advance 0.05 s: autopilot, gusts, roll, leader, wake, reward."""
        a0, a1, a2, a3 = np.asarray(action, dtype=np.float64).tolist()
        a0, a1, a2, a3 = min(1.0, max(-1.0, a0)), min(1.0, max(-1.0, a1)), min(1.0, max(-1.0, a2)), min(1.0, max(-1.0, a3))
        if self._noise_at == _NOISE_BLOCK:
            self._noise = self.np_random.standard_normal((_NOISE_BLOCK, 4)).tolist()
            self._noise_at = 0
        n_u, n_v, n_w, self._sensor_draw = self._noise[self._noise_at]
        self._noise_at += 1

        gain, command, gust = self._velocity_gain, self._command, self._gust
        command[0] += gain * (COMMAND_LIMITS[0] * a0 - command[0])
        command[1] += gain * (COMMAND_LIMITS[1] * a1 - command[1])
        command[2] += gain * (COMMAND_LIMITS[2] * a2 - command[2])
        decay, kick = self._gust_decay, self._gust_kick
        gust[0] = decay * gust[0] + kick * n_u
        gust[1] = decay * gust[1] + kick * n_v
        gust[2] = decay * gust[2] + kick * n_w
        self._x += DT * (command[0] + gust[0])
        self._y += DT * (command[1] + gust[1])
        self._z += DT * (command[2] + gust[2])
        # Roll: commanded rate plus wing-leveller, plus the rate at which the wake's spanwise slope rolls the wing.
        target_rate = COMMAND_LIMITS[3] * a3 - WING_LEVELLER * self._bank + self._gradient / self._half_span
        self._roll_rate += self._roll_gain * (target_rate - self._roll_rate)
        self._bank += DT * self._roll_rate
        self._action = (a0, a1, a2, a3)
        self._time += DT
        self._leader_motion()
        self._lags = [self._reading, *self._lags[:3]]
        self._sense()
        self._filtered += self._filter_gain * (self._reading - self._filtered)

        energy = ENERGY_WEIGHT * (self.wake.weight * self._upwash / self._induced - math.tan(self._bank) ** 2)
        envelope = -ENVELOPE_WEIGHT * min(self._envelope_error, ENVELOPE_CAP)
        collision = -COLLISION_WEIGHT * max(0.0, 1.0 - self._distance / COLLISION_RADIUS)
        effort = -ACTION_WEIGHT * (a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3) / 4.0
        crashed = self._z <= 0.0 or self._distance < CONTACT_RADIUS
        reward = energy + envelope + collision + effort - (CRASH_PENALTY if crashed else 0.0)
        info = self._info()
        info.update(reward_energy=energy, reward_envelope=envelope, reward_collision=collision, reward_action=effort,
                    crashed=int(crashed))
        return self._observation(), reward, crashed, False, info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``, a top view in the leader's frame (uint8, 200 × 160 × 3).

        Relative x ∈ [−8, 2] m runs up the image and the left wing is on the left;
        the background is the span-averaged upwash at the leader's height (red up,
        blue down), the grey box the formation envelope, the white bar the leader
        and the yellow bar the follower (its span foreshortened by its bank).
        """
        if self.render_mode is None:
            return None
        if self._background is None:
            self._background = _upwash_picture(self.wake)
        frame = self._background.copy()
        (x0, x1), (y0, y1), _ = ENVELOPE
        for x in (x0, x1):
            _paint(frame, (x, x), (y0, y1), (128, 128, 128))
        for y in (y0, y1):
            _paint(frame, (x0, x1), (y, y), (128, 128, 128))
        half = self._half_span
        _paint(frame, (-0.1, 0.1), (-half, half), (255, 255, 255))
        rx, ry, _ = self._rel
        reach = half * math.cos(self._bank)
        _paint(frame, (rx - 0.1, rx + 0.1), (ry - reach, ry + reach), (255, 220, 0))
        return frame

    # ---------------------------------------------------------------- internals
    def _leader_motion(self) -> None:
        ay, wy, py, az, wz, pz = self._weave
        t = self._time
        self._leader_y = ay * math.sin(wy * t + py)
        self._leader_vy = ay * wy * math.cos(wy * t + py)
        self._leader_z = TARGET_ALTITUDE + az * math.sin(wz * t + pz)
        self._leader_vz = az * wz * math.cos(wz * t + pz)

    def _sense(self) -> None:
        """Relative geometry, the wake on the follower's wing and the upwash sensor's reading."""
        rx, ry, rz = self._x, self._y - self._leader_y, self._z - self._leader_z
        self._rel = (rx, ry, rz)
        self._distance = math.sqrt(rx * rx + ry * ry + rz * rz)
        (x0, x1), (y0, y1), (z0, z1) = ENVELOPE
        ex, ey, ez = max(x0 - rx, 0.0, rx - x1), max(y0 - ry, 0.0, ry - y1), max(z0 - rz, 0.0, rz - z1)
        self._envelope_error = math.sqrt(ex * ex + ey * ey + ez * ez)
        self._upwash, self._centre, self._gradient = self.wake.follower_upwash(rx, ry, rz, self._bank)
        self._reading = self._upwash + self.sensor_noise * self._sensor_draw

    def _observation(self) -> np.ndarray:
        v = self._v
        command, gust = self._command, self._gust
        vx, vy, vz = command[0] + gust[0], command[1] + gust[1], command[2] + gust[2]
        airspeed = v + command[0]
        rx, ry, rz = self._rel
        return np.array([
            command[0], vy, vz, self._bank, self._roll_rate, math.atan2(vy, v + vx),
            vx, vy - self._leader_vy, vz - self._leader_vz, rx, ry, rz,
            self._reading, self._distance, self._x, self._y, self._z, *self._action,
            self._z - TARGET_ALTITUDE + (airspeed * airspeed - v * v) / (2.0 * GRAVITY), *self._lags,
            math.atan2(vz, math.hypot(v + vx, vy)), self._filtered,
        ], dtype=np.float32)

    def _info(self) -> dict[str, float | int]:
        wake, bank = self.wake, self._bank
        airspeed = self._v + self._command[0]
        lift_factor = 1.0 / math.cos(bank) ** 2
        power_saving = wake.weight * self._upwash
        power_required = (self._parasite * airspeed**3 + self._induced * self._v / airspeed * lift_factor
                          - power_saving + wake.weight * self._command[2])
        rx, ry, rz = self._rel
        return {
            "true_upwash": self._upwash, "upwash_centre": self._centre, "upwash_gradient": self._gradient,
            "rel_x": rx, "rel_y": ry, "rel_z": rz, "distance": self._distance,
            "power_saving": power_saving, "power_required": power_required, "bank": bank,
            "leader_y": self._leader_y, "leader_z": self._leader_z,
            "envelope_error": self._envelope_error, "in_collision_zone": int(self._distance < COLLISION_RADIUS),
        }


_VIEW = ((-8.0, 2.0), (-4.0, 4.0))  # relative x and y shown by render() (m)
_PIXELS_PER_METRE = 20


def _upwash_picture(wake: WakeModel) -> np.ndarray:
    """The render background: span-averaged upwash over the view, red for up and blue for down (full at 0.3 m/s)."""
    (x0, x1), (y0, y1) = _VIEW
    xs = x1 - (np.arange(round((x1 - x0) * _PIXELS_PER_METRE)) + 0.5) / _PIXELS_PER_METRE
    ys = y1 - (np.arange(round((y1 - y0) * _PIXELS_PER_METRE)) + 0.5) / _PIXELS_PER_METRE
    w = np.clip(wake.span_upwash(xs[:, None], ys[None, :], 0.0).mean / 0.3, -1.0, 1.0)
    picture = np.full((*w.shape, 3), 30.0)
    picture[..., 0] += 200 * np.maximum(w, 0.0)
    picture[..., 2] += 200 * np.maximum(-w, 0.0)
    return picture.astype(np.uint8)


def _paint(frame: np.ndarray, xs: tuple[float, float], ys: tuple[float, float], colour: tuple[int, int, int]) -> None:
    """Fill the part of the rectangle ``xs × ys`` (relative metres) that lies in the view (at least one pixel wide)."""
    (_, x_top), (_, y_left) = _VIEW
    rows = sorted(round((x_top - x) * _PIXELS_PER_METRE) for x in xs)
    cols = sorted(round((y_left - y) * _PIXELS_PER_METRE) for y in ys)
    r0, r1 = max(rows[0], 0), min(rows[1] + 1, frame.shape[0])
    c0, c1 = max(cols[0], 0), min(cols[1] + 1, frame.shape[1])
    frame[r0:r1, c0:c1] = colour


def probe_grid(n_x: int = 80, n_y: int = 120, *, nominal: Literal["flight", "reference"] = "flight",
               wake: WakeModel | None = None) -> ObsSet:
    """The reference's probe grid: follower x ∈ [−6, 0] m × y ∈ [−3, 3] m at 10 m, leader at the origin.

    Indices 9–10 and 14–15 hold (x, y), 11 = 0 and 16 = 10. The rest depends on
    ``nominal``:

    * ``"flight"`` (default): the state of steady formation flight at that spot,
      i.e. what the actor would see there in calm air. Both aircraft straight and
      level at 15 m/s, wings level, previous action 0 (indices 0–8, 17–21, 26 = 0);
      13 = the distance; the sensor, its history and its filter (12, 22–25, 27)
      hold the noise-free upwash. The label is then linearly readable from the
      input itself: judge a probe on it against the raw-observation control.
    * ``"reference"``: as the reference's probe script builds it, everything else
      0 (the sensor too), so a probe finds upwash only where the network computes
      it from position.

    Labels (noise-free, one vectorised call to the same :class:`WakeModel` the env
    uses): ``upwash`` (also as ``true_upwash``, the env's info key),
    ``upwash_centre``, ``upwash_gradient``, ``power_saving``, ``rel_x``, ``rel_y``,
    ``distance``.

    Example:
        >>> from rli.envs.formation import probe_grid
        >>> grid = probe_grid()
        >>> len(grid), grid.meta["grid_shape"], grid.obs.shape
        (9600, [80, 120], (9600, 28))
        >>> bool((grid.obs[:, 12] == grid.labels["upwash"].astype("float32")).all())
        True
        >>> float(abs(probe_grid(nominal="reference").obs[:, 12]).max())
        0.0
    """
    if n_x < 2 or n_y < 2:
        raise RliError(f"probe_grid needs at least 2 points per axis, got n_x={n_x}, n_y={n_y}")
    if nominal not in ("flight", "reference"):
        raise RliError(f"nominal must be 'flight' or 'reference', got {nominal!r}")
    wake = wake if wake is not None else WakeModel()
    base = np.zeros(len(OBS_NAMES), dtype=np.float32)
    base[POS_Z] = TARGET_ALTITUDE

    def labels(obs: np.ndarray) -> dict[str, np.ndarray]:
        x, y = obs[:, REL_X].astype(np.float64), obs[:, REL_Y].astype(np.float64)
        seen = wake.span_upwash(x, y, 0.0)
        return {"upwash": seen.mean, "true_upwash": seen.mean, "upwash_centre": seen.centre,
                "upwash_gradient": seen.gradient, "power_saving": wake.weight * seen.mean,
                "rel_x": x, "rel_y": y, "distance": np.hypot(x, y)}

    grid = ObsSet.grid(base, {REL_X: np.linspace(-6.0, 0.0, n_x), REL_Y: np.linspace(-3.0, 3.0, n_y)}, label_fn=labels)
    obs = grid.obs.copy()
    obs[:, POS_X], obs[:, POS_Y] = obs[:, REL_X], obs[:, REL_Y]
    if nominal == "flight":
        obs[:, DISTANCE] = grid.labels["distance"]
        for name in ("upwash_sensor", "sensor_lag_1", "sensor_lag_2", "sensor_lag_3", "sensor_lag_4",
                     "sensor_filtered"):
            obs[:, OBS_NAMES.index(name)] = grid.labels["upwash"]
    return ObsSet(obs, grid.labels, meta={**grid.meta, "env": "rli/FormationFlight-v0", "nominal": nominal})
