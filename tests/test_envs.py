"""rli.envs: FormationFlight-v0 (API, registration, determinism, layout, reward, vector envs), the wake model, the probe grid."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

import rli
from rli.envs import FORMATION_FLIGHT, FormationFlightEnv, WakeModel, probe_grid
from rli.envs.formation import OBS_NAMES

ROOT = Path(__file__).parent.parent
WAKE = WakeModel()
S = WAKE.vortex_spacing / 2  # lateral position of each trailing vortex
STILL = {"gust_std": 0.0, "leader_manoeuvres": False, "sensor_noise": 0.0}  # a fixed follower stays where it is put

coords = st.floats(-8.0, 8.0, allow_nan=False)
heights = st.floats(-1.5, 1.5, allow_nan=False)


def rollout(env, seed: int, steps: int, action_seed: int = 0):
    """(observations, rewards, infos, actions) of ``steps`` seeded random steps, stopping at a termination."""
    actions = np.random.default_rng(action_seed).uniform(-1, 1, (steps, 4)).astype(np.float32)
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs), rewards.append(reward), infos.append(info)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards), infos, actions[: len(rewards)]


def mean_reward_at(position, steps: int = 10) -> float:
    """Average reward of a follower held at ``position`` (relative to the leader) with zero commands in still air."""
    env = FormationFlightEnv(**STILL)
    env.reset(seed=0, options={"start": position})
    rewards = []
    for _ in range(steps):
        _, reward, _, _, info = env.step(np.zeros(4))
        rewards.append(reward)
    assert np.allclose([info["rel_x"], info["rel_y"], info["rel_z"]], position, atol=1e-9)  # it stayed there
    return float(np.mean(rewards))


# ------------------------------------------------------------------ API and registration
def test_check_env_passes_with_only_the_unbounded_space_warnings():
    env = gym.make(FORMATION_FLIGHT).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    messages = [str(w.message) for w in caught]
    assert all("infinity" in m for m in messages), messages  # positions are unbounded, as in MuJoCo envs


def test_import_rli_registers_the_env():
    code = ("import gymnasium as gym\nassert 'rli/FormationFlight-v0' not in gym.registry\nimport rli\n"
            "env = gym.make('rli/FormationFlight-v0')\nprint(type(env.unwrapped).__name__, env.spec.max_episode_steps)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["FormationFlightEnv", "400"]


def test_registered_spec_and_module_prefixed_id():
    env = gym.make("rli.envs:" + FORMATION_FLIGHT)
    assert env.spec.max_episode_steps == 400 and isinstance(env.unwrapped, FormationFlightEnv)
    assert env.observation_space.shape == (28,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (4,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1


def test_episode_truncates_after_400_steps():
    env = gym.make(FORMATION_FLIGHT, gust_std=0.0, leader_manoeuvres=False)
    env.reset(seed=0, options={"start": (-3.0, 1.3, 0.0)})
    ends = [env.step(np.zeros(4))[2:4] for _ in range(400)]
    assert not any(terminated for terminated, _ in ends)
    assert [truncated for _, truncated in ends] == [False] * 399 + [True]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"render_mode": "human"}, "renders only 'rgb_array'"),
    ({"sensor_noise": -0.1}, "must be >= 0"),
    ({"gust_time": 0.0}, "gust_time > 0"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(rli.RliError, match=message):
        FormationFlightEnv(**kwargs)


def test_bad_start_option_is_rejected():
    with pytest.raises(rli.RliError, match="relative to the leader"):
        FormationFlightEnv().reset(seed=0, options={"start": (1.0, 2.0)})


def test_info_holds_numeric_scalars_only():
    _, _, infos, _ = rollout(FormationFlightEnv(), seed=3, steps=5)
    for info in infos:
        assert {"true_upwash", "upwash_centre", "rel_x", "rel_y", "rel_z", "distance", "power_saving",
                "in_collision_zone"} <= set(info)
        for key, value in info.items():
            assert type(value) in (float, int), (key, type(value))
    assert {"reward_energy", "reward_envelope", "reward_collision", "reward_action", "crashed"} <= set(infos[-1])


def test_rgb_array_top_view_shows_the_follower_where_it_is():
    env = gym.make(FORMATION_FLIGHT, render_mode="rgb_array", **STILL)
    env.reset(seed=0, options={"start": (-3.0, 1.3, 0.0)})
    frame = env.render()
    assert frame.shape == (200, 160, 3) and frame.dtype == np.uint8
    follower = np.argwhere(np.all(frame == (255, 220, 0), axis=-1))
    rows, cols = follower[:, 0].mean(), follower[:, 1].mean()
    assert (2.0 - rows / 20, 4.0 - cols / 20) == pytest.approx((-3.0, 1.3), abs=0.1)  # x up the image, y to the left
    assert frame[140, 80, 2] > frame[140, 80, 0] and frame[140, 50, 0] > frame[140, 50, 2]  # downwash behind, upwash beside
    assert FormationFlightEnv().render() is None


# ------------------------------------------------------------------------- determinism
def test_same_seed_same_trajectory_other_seed_another():
    first = rollout(FormationFlightEnv(), seed=7, steps=120)
    second = rollout(FormationFlightEnv(), seed=7, steps=120)
    other = rollout(FormationFlightEnv(), seed=8, steps=120)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert not np.array_equal(first[0][0], other[0][0])


def test_reset_draws_start_in_the_documented_box():
    env = FormationFlightEnv()
    starts = np.array([env.reset(seed=seed)[0] for seed in range(200)])
    rel_x, rel_y, altitude = starts[:, 9], starts[:, 10], starts[:, 16]
    assert rel_x.min() >= -6 and rel_x.max() <= -2 and rel_x.max() - rel_x.min() > 3.5
    assert rel_y.min() >= -3 and rel_y.max() <= 3 and rel_y.max() - rel_y.min() > 5
    assert np.all(np.abs(altitude - 10) <= 0.2 + 1e-5)


# ------------------------------------------------------------------- observation layout
def test_observation_layout_matches_the_info():
    observations, _, infos, actions = rollout(FormationFlightEnv(), seed=1, steps=200)
    rel = np.array([[i["rel_x"], i["rel_y"], i["rel_z"]] for i in infos])
    leader = np.array([[0.0, i["leader_y"], i["leader_z"]] for i in infos])
    np.testing.assert_allclose(observations[:, 9:12], rel, atol=1e-5)
    np.testing.assert_allclose(observations[:, 14:17], rel + leader, atol=1e-5)  # absolute = relative + leader
    np.testing.assert_allclose(observations[:, 13], [i["distance"] for i in infos], rtol=1e-6)
    np.testing.assert_allclose(observations[:, 3], [i["bank"] for i in infos], atol=1e-6)
    np.testing.assert_allclose(observations[1:, 17:21], actions, atol=1e-6)  # the action just applied
    assert np.all(observations[0, 17:21] == 0)
    for lag in range(1, 5):  # 22–25: the sensor 1..4 steps ago
        np.testing.assert_array_equal(observations[lag:, 21 + lag], observations[:-lag, 12])
    assert np.ptp([i["leader_y"] for i in infos]) > 0.01  # the leader weaves


def test_actions_are_clipped():
    env = FormationFlightEnv()
    env.reset(seed=0)
    obs, *_ = env.step(np.array([5.0, -5.0, 0.5, -0.25]))
    assert obs[17:21].tolist() == [1.0, -1.0, 0.5, -0.25]


def test_sensor_is_true_upwash_plus_gaussian_noise_of_the_documented_sigma():
    env = FormationFlightEnv(sensor_noise=0.05)
    residuals = []
    for seed in range(6):
        observations, _, infos, _ = rollout(env, seed=seed, steps=399, action_seed=seed)
        residuals.extend(observations[:, 12] - np.array([i["true_upwash"] for i in infos]))
    residuals = np.array(residuals)
    assert len(residuals) > 2000
    assert abs(residuals.mean()) < 4 * 0.05 / math.sqrt(len(residuals))
    assert residuals.std() == pytest.approx(0.05, rel=0.06)
    assert abs(np.corrcoef(residuals[1:], residuals[:-1])[0, 1]) < 0.1  # fresh noise every step


def test_noise_free_sensor_reads_the_true_upwash():
    observations, _, infos, _ = rollout(FormationFlightEnv(sensor_noise=0.0), seed=2, steps=50)
    np.testing.assert_allclose(observations[:, 12], [i["true_upwash"] for i in infos], atol=1e-7)


# ------------------------------------------------------------------------- wake physics
def test_constants_follow_from_the_reference_aircraft():
    assert WAKE.vortex_spacing == pytest.approx(math.pi / 4 * 1.5)
    assert WAKE.circulation == pytest.approx(2.0 * 9.81 / (1.225 * 15.0 * math.pi / 4 * 1.5))
    assert 0.02 * 1.5 <= WAKE.core_radius <= 0.1 * 1.5


def test_upwash_outboard_of_the_tip_vortex_downwash_behind_the_centre():
    assert WAKE.point_upwash(-3.0, S + WAKE.core_radius, 0.0) > 0.5 * WAKE.peak_velocity
    assert WAKE.point_upwash(-3.0, 0.0, 0.0) < -0.5 * WAKE.peak_velocity
    assert WAKE.span_upwash(-3.0, WAKE.vortex_spacing, 0.0).mean > 0.1
    assert WAKE.span_upwash(-3.0, 0.0, 0.0).mean < -0.3


def test_swirl_peaks_one_core_radius_outside_the_vortex():
    behind = -200.0  # far behind: the legs act as infinite vortices
    sink = WAKE.descent_rate * 200.0 / WAKE.airspeed
    ys = np.linspace(S, S + 1.0, 2001)
    w = WAKE.point_upwash(behind, ys, -sink)
    assert ys[np.argmax(w)] - S == pytest.approx(WAKE.core_radius, abs=0.01)
    on_axis = WAKE.point_upwash(behind, S, -sink)
    assert np.isfinite(on_axis) and abs(on_axis) < 0.3 * WAKE.peak_velocity  # finite on the axis: no singularity


def test_far_wake_is_the_two_dimensional_vortex_pair():
    gamma, rc2 = WAKE.circulation, WAKE.core_radius**2
    ys, x = np.linspace(-4, 4, 41), -1e5
    z = -WAKE.descent_rate * 1e5 / WAKE.airspeed  # on the vortices' (descended) height
    pair = gamma / (2 * np.pi) * ((ys - S) / ((ys - S) ** 2 + rc2) - (ys + S) / ((ys + S) ** 2 + rc2))
    np.testing.assert_allclose(WAKE.point_upwash(x, ys, z), pair, atol=1e-6)


def test_upwash_ahead_of_the_wing_and_downwash_growing_towards_it():
    assert WAKE.point_upwash(2.0, 0.0, 0.0) > 0  # the bound vortex induces upwash ahead of a lifting wing
    near, far = WAKE.span_upwash([-0.5, -6.0], WAKE.vortex_spacing, 0.0).mean
    assert 0 < near < far  # the bound vortex's downwash fades behind the leader


def test_upwash_decays_outboard():
    w = WAKE.span_upwash(-3.0, np.linspace(2.0, 12.0, 50), 0.0).mean
    assert np.all(w > 0) and np.all(np.diff(w) < 0) and w[-1] < 0.05 * w[0]


def test_best_lateral_offset_is_about_b0():
    ys = np.linspace(0.0, 3.0, 301)
    best = ys[np.argmax(WAKE.span_upwash(-3.0, ys, 0.0).mean)]
    assert best == pytest.approx(WAKE.vortex_spacing, rel=0.2)
    assert WAKE.power_saving(-3.0, best, 0.0) / WAKE.induced_power > 0.3


@given(coords, coords, heights)
def test_point_upwash_is_finite_symmetric_and_bounded(x, y, z):
    w, mirrored = WAKE.point_upwash(x, y, z), WAKE.point_upwash(x, -y, z)
    assert np.isfinite(w)
    assert w == pytest.approx(mirrored, abs=1e-12)
    assert abs(w) <= 3 * WAKE.peak_velocity  # each leg and the bound vortex are bounded by the core peak


@given(coords, coords, heights, st.floats(-0.8, 0.8))
def test_span_upwash_is_symmetric_bounded_and_equal_to_the_scalar_path(x, y, z, bank):
    seen, mirrored = WAKE.span_upwash(x, y, z, bank), WAKE.span_upwash(x, -y, z, -bank)
    assert np.isfinite(seen.mean) and abs(seen.mean) <= 3 * WAKE.peak_velocity
    assert seen.mean == pytest.approx(mirrored.mean, abs=1e-12)
    assert seen.gradient == pytest.approx(-mirrored.gradient, abs=1e-12)  # mirrored wing: slope flips
    scalar = WAKE.follower_upwash(x, y, z, bank)
    np.testing.assert_allclose(scalar, (seen.mean, seen.centre, seen.gradient), rtol=1e-12, atol=1e-14)


def test_wake_model_validates_its_parameters():
    with pytest.raises(rli.RliError, match="odd"):
        WakeModel(n_stations=8)
    with pytest.raises(rli.RliError, match="wingspan must be positive"):
        WakeModel(wingspan=0.0)


# ------------------------------------------------------------------------------- reward
def test_reward_is_highest_in_the_upwash_sweet_spot():
    sweet = mean_reward_at((-3.0, 1.3, 0.0))
    mirrored = mean_reward_at((-3.0, -1.3, 0.0))
    behind = mean_reward_at((-3.0, 0.0, 0.0))
    far = mean_reward_at((-3.0, 3.0, 0.0))
    outside = mean_reward_at((-9.0, 1.3, 0.0))
    too_close = mean_reward_at((-0.8, 0.9, 0.0))
    assert sweet == pytest.approx(mirrored, abs=1e-6)
    assert sweet > 0.3 and sweet > far + 0.25 > behind + 1.0
    assert sweet > outside + 1.0 and sweet > too_close + 0.5


def test_flying_in_the_sweet_spot_beats_following_and_random_flight():
    def episode_return(seed: int, slot_y: float | None) -> float:
        env = gym.make(FORMATION_FLIGHT)
        obs, _ = env.reset(seed=seed)
        rng, total = np.random.default_rng(seed), 0.0
        for _ in range(400):
            if slot_y is None:
                action = rng.uniform(-1, 1, 4)
            else:  # a proportional-derivative autopilot holding a slot 3 m behind the leader
                slot = np.array([-3.0, math.copysign(slot_y, obs[10]), 0.0])
                command = -1.5 * (obs[9:12] - slot) - 0.3 * obs[6:9]
                action = np.clip([command[0] / 2, command[1] / 2, command[2], -2 * obs[3]], -1, 1)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            if terminated or truncated:
                return total
        raise AssertionError("the episode did not end")

    seeds = (0, 1)
    sweet = np.mean([episode_return(s, 1.3) for s in seeds])
    follow = np.mean([episode_return(s, 0.0) for s in seeds])
    random = np.mean([episode_return(s, None) for s in seeds])
    assert sweet > 80 and sweet > follow + 300 and sweet > random + 200


def test_collision_and_ground_end_the_episode():
    env = FormationFlightEnv(**STILL)
    env.reset(seed=0, options={"start": (-0.3, 0.0, 0.0)})
    _, reward, terminated, _, info = env.step(np.zeros(4))
    assert terminated and info["crashed"] == 1 and info["in_collision_zone"] == 1 and reward < -20
    env.reset(seed=0, options={"start": (-3.0, 3.0, -9.97)})
    for _ in range(20):
        _, reward, terminated, _, info = env.step(np.array([0.0, 0.0, -1.0, 0.0]))
        if terminated:
            break
    assert terminated and info["crashed"] == 1 and reward < -20


# --------------------------------------------------------------------------- vector envs
def test_sync_vector_env_equals_single_envs():
    seeds, steps = [11, 12, 13], 60
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, len(seeds), 4)).astype(np.float32)
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(FORMATION_FLIGHT) for _ in seeds])
    obs, infos = vec.reset(seed=seeds)
    batched = [obs]
    for action in actions:
        obs, _, terminated, _, infos = vec.step(action)
        batched.append(obs)
        assert not terminated.any()
    for k, seed in enumerate(seeds):
        env = gym.make(FORMATION_FLIGHT)
        single = [env.reset(seed=seed)[0]] + [env.step(a[k])[0] for a in actions]
        np.testing.assert_array_equal(np.array(batched)[:, k], np.array(single))
    assert infos["true_upwash"].shape == (len(seeds),)


def test_async_vector_env_equals_sync():
    actions = np.random.default_rng(1).uniform(-1, 1, (20, 2, 4)).astype(np.float32)
    results = []
    for vec in (gym.vector.SyncVectorEnv([FormationFlightEnv] * 2), gym.vector.AsyncVectorEnv([FormationFlightEnv] * 2)):
        obs, _ = vec.reset(seed=[5, 6])
        trace = [obs] + [vec.step(a)[0] for a in actions]
        vec.close()
        results.append(np.array(trace))
    np.testing.assert_array_equal(results[0], results[1])


# --------------------------------------------------------------------------- probe grid
def test_probe_grid_shape_labels_and_layout():
    grid = probe_grid()
    assert len(grid) == 9600 and grid.obs.shape == (9600, 28) and grid.obs.dtype == np.float32
    assert grid.meta["grid_shape"] == [80, 120]
    x, y = grid.labels["rel_x"], grid.labels["rel_y"]
    assert (x.min(), x.max(), y.min(), y.max()) == pytest.approx((-6, 0, -3, 3), abs=1e-6)
    np.testing.assert_allclose(grid.labels["upwash"], WAKE.span_upwash(x, y, 0.0).mean, rtol=1e-12)
    np.testing.assert_array_equal(grid.labels["true_upwash"], grid.labels["upwash"])
    np.testing.assert_array_equal(grid.obs[:, 14:16], grid.obs[:, 9:11])  # leader at the origin
    assert np.all(grid.obs[:, 16] == 10) and np.all(grid.obs[:, 11] == 0)
    for index in (12, 22, 23, 24, 25, 27):
        np.testing.assert_allclose(grid.obs[:, index], grid.labels["upwash"], atol=1e-6)
    assert np.ptp(grid.labels["upwash"]) > 0.5  # downwash behind the leader, upwash beside it
    assert len(probe_grid(n_x=5, n_y=4)) == 20


def test_reference_probe_grid_sets_only_the_positions():
    grid, flight = probe_grid(nominal="reference"), probe_grid()
    set_by_reference = [9, 10, 14, 15, 16]
    assert np.all(np.delete(grid.obs, set_by_reference, axis=1) == 0)
    np.testing.assert_array_equal(grid.obs[:, set_by_reference], flight.obs[:, set_by_reference])
    np.testing.assert_array_equal(grid.labels["upwash"], flight.labels["upwash"])
    assert grid.meta["nominal"] == "reference"
    with pytest.raises(rli.RliError, match="nominal must be"):
        probe_grid(nominal="paper")


def test_probe_grid_row_is_what_the_env_shows_at_that_spot():
    grid = probe_grid()
    for row in (0, 4321, 9599):
        x, y = float(grid.obs[row, 9]), float(grid.obs[row, 10])
        obs, _ = FormationFlightEnv(**STILL).reset(seed=0, options={"start": (x, y, 0.0)})
        np.testing.assert_allclose(obs, grid.obs[row], atol=1e-6)


def test_docs_document_every_observation_index():
    text = (ROOT / "docs" / "formation_flight.md").read_text()
    rows = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*`(\w+)`", text, re.M))
    assert rows == {str(i): name for i, name in enumerate(OBS_NAMES)}


def test_docs_quick_start_runs():
    text = (ROOT / "docs" / "formation_flight.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/formation_flight.md", "exec"), {})
