"""Claims about the MiniGrid DoorKey-5x5 CNN PPO policy (examples/checkpoints/minigrid_doorkey_ppo_seed0.zip).

How the thresholds were set. The attribution thresholds (a cell's share at least 3× a
uniform spread, and above the untrained network's share) and the probe thresholds
(accuracy / R² floors and selectivity margins below) were fixed from reasoning before
any number was looked at. Two of those pre-registered claims turned out false (the
probes are not selective over the untrained network and the raw input): they stay here
as tests of their refutation (the claim's assertion must fail, for the stated reason), with
the measured numbers, not with loosened thresholds.
The patching and steering claims were shaped on an exploratory run (rollouts from
seeds 500… and 3000…), with thresholds written as reasoned comparisons (a position
carrying at least 2× a uniform split of the effect over its map; steering beating a
random vector of the same norm) and are confirmed here on fresh rollouts: every claim
below runs on episodes from seed 2000 (steering: 4000), which no exploration saw.
Numbers in the docstrings were measured on this checkpoint on 2026-12-01.

The whole suite is ``slow`` (the two logistic probes with their controls take about a
minute together on 2 cores; the other claims a few minutes): run it with
``python -m pytest examples/paper_claims/test_minigrid_claims.py -m slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rli as rli_core
from rli.envs.minigrid_env import AGENT_CELL, DOORKEY, minigrid_obs, region_masks
from rli.stats import t_interval

CHECKPOINT = Path(__file__).parent.parent / "checkpoints" / "minigrid_doorkey_ppo_seed0.zip"
FEATURES = 8  # features_extractor.linear.1: the CNN's 64-unit output (ReLU), what both heads read
CONV_RELUS = (1, 3, 5)  # the three conv feature maps (16×6×6, 32×5×5, 64×4×4)
UNIFORM_CELL = 1 / 49  # one cell's share of |attribution| if it were spread evenly over the 7×7 view

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def doorkey_policy() -> rli_core.Policy:
    return rli_core.load_policy(CHECKPOINT)


@pytest.fixture(scope="module")
def doorkey_rollouts(doorkey_policy) -> rli_core.ObsSet:
    """Every step of 100 episodes from seed 2000 (about 1,000 observations), labelled from the env's state."""
    return minigrid_obs(doorkey_policy, episodes=100, seed=2000)


@pytest.fixture
def rli_policy(doorkey_policy):
    return doorkey_policy


@pytest.fixture
def rli_env():
    return DOORKEY


@pytest.fixture
def rli_obs(doorkey_rollouts):
    return doorkey_rollouts


#: the one reason a refuted selectivity claim may fail: the probe itself clears its floor, the selectivity does not
SELECTIVITY_REFUTED = r"selectivity [+-]\d\.\d+ is below min_selectivity="


def _refuted_for_selectivity(claim: pytest.ExceptionInfo[AssertionError]) -> None:
    assert "CI lower bound" not in str(claim.value), f"the probe itself failed, not only its selectivity: {claim.value}"


def test_the_cnn_features_decode_the_agents_direction(rli):
    """Logistic probe of the heading (4 classes) on the 64 CNN features, split by episode.

    Exploratory run (seeds 500…, 1,014 observations, 100 episodes): accuracy 0.995
    [0.989, 1.000] (majority class 0.435). Fixed in advance: CI lower bound ≥ 0.6.
    """
    rli.assert_probe_r2(layer=FEATURES, target="agent_dir", kind="logistic", min=0.6, control_seeds=2)


def test_the_heading_is_computed_by_training_not_read_off_the_input_is_refuted(rli):
    """Pre-registered (before looking): selectivity ≥ 0.05 over the best control. Refuted.

    Exploratory run: trained 0.995, untrained network (SB3's init) 0.994, raw input 0.996,
    labels shuffled between episodes 0.496. In a 5×5 room the egocentric view gives the
    heading away (where the outer walls and the goal's corner appear), so decoding it shows
    nothing the CNN learned. Should a retrained checkpoint make the claim true, this test
    fails and the docstring must be revised.
    """
    with pytest.raises(AssertionError, match=SELECTIVITY_REFUTED) as claim:
        rli.assert_probe_r2(layer=FEATURES, target="agent_dir", kind="logistic", min=0.6, min_selectivity=0.05,
                            control_seeds=2)
    _refuted_for_selectivity(claim)


def test_the_cnn_features_decode_the_distance_to_the_goal(rli):
    """Ridge probe of the Manhattan distance to the goal (1–4 cells) on the 64 CNN features.

    Exploratory run: R² 0.879 [0.841, 0.917]. Fixed in advance: CI lower bound ≥ 0.5.
    """
    rli.assert_probe_r2(layer=FEATURES, target="goal_distance", min=0.5, control_seeds=2)


def test_the_goal_distance_is_computed_by_training_not_read_off_the_input_is_refuted(rli):
    """Pre-registered (before looking): selectivity ≥ 0.1 over the best control. Refuted.

    Exploratory run: trained 0.879, untrained network 0.959 (higher), raw input 0.875,
    shuffled 0.063. Random ReLU features of the view decode the distance better than the
    trained ones: the trained CNN keeps less of it than a random one does.
    """
    with pytest.raises(AssertionError, match=SELECTIVITY_REFUTED) as claim:
        rli.assert_probe_r2(layer=FEATURES, target="goal_distance", min=0.5, min_selectivity=0.1, control_seeds=2)
    _refuted_for_selectivity(claim)


def _cell_shares(policy: rli_core.Policy, frames: rli_core.ObsSet, which: str) -> np.ndarray:
    from rli.attribution import attribute

    result = attribute(policy, frames, target="action", method="ig", n_steps=32)
    mass = np.abs(result.attributions).sum(axis=-1)  # (n, 7, 7): |attribution| per cell, channels summed
    return (mass * region_masks(frames, which)).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))


@pytest.mark.parametrize("which", ["key", "goal"])
def test_attribution_mass_falls_on_the_key_and_goal_tiles(doorkey_policy, doorkey_rollouts, which):
    """Integrated gradients of the chosen action's logit (zero baseline), share of |attribution| on the tile.

    Frames: the key visible and not yet carried (key), the goal visible (goal); per-frame
    regions from the env's state. Exploratory run (seeds 500…): key 0.250 [0.235, 0.264],
    untrained network (SB3's init) 0.148, paired difference +0.102 [+0.084, +0.119]; goal
    0.162 [0.158, 0.167], untrained 0.100, difference +0.063 [+0.056, +0.069]. The
    untrained control matters: the key and goal codes (5 and 8) are larger than a wall's
    (2), so any network's IG from a zero frame leans toward them. Fixed in advance: the
    share's CI lower bound ≥ 3 × 1/49 and the paired difference over the untrained
    network's share has a CI above 0 (t-intervals over episode means). Confirmed on the
    fresh rollouts (seeds 2000…): key 0.236 [0.221, 0.251], minus untrained +0.081
    [+0.063, +0.099] (209 frames, 98 episodes); goal 0.163 [0.158, 0.168], +0.063
    [+0.057, +0.070] (440 frames, 98 episodes).
    """
    from rli.untrained import untrained_copy

    labels = doorkey_rollouts.labels
    seen = labels[f"{which}_view_x"] >= 0
    rows = np.flatnonzero(seen & (labels["has_key"] == 0) if which == "key" else seen)
    frames = doorkey_rollouts[rows]
    trained = _cell_shares(doorkey_policy, frames, which)
    control = _cell_shares(untrained_copy(doorkey_policy, seed=0), frames, which)
    episode = frames.labels["episode"]
    groups = np.unique(episode)
    assert groups.size >= 20, f"only {groups.size} episodes show the {which}"
    means = np.array([trained[episode == g].mean() for g in groups])
    diffs = np.array([(trained - control)[episode == g].mean() for g in groups])
    low, high = t_interval(means)
    d_low, d_high = t_interval(diffs)
    print(f"{which}: share {means.mean():.3f} [{low:.3f}, {high:.3f}] on {len(rows)} frames / {groups.size} episodes; "
          f"minus untrained {diffs.mean():+.3f} [{d_low:+.3f}, {d_high:+.3f}]")
    assert low >= 3 * UNIFORM_CELL, f"{which} share CI [{low:.3f}, {high:.3f}] reaches below 3/49"
    assert d_low > 0, f"the trained network's {which} share is not above the untrained one's: [{d_low}, {d_high}]"


def _has_key_pairs(rollouts: rli_core.ObsSet) -> tuple[rli_core.ObsSet, rli_core.ObsSet]:
    """Frames carrying the key before the door is open, and the same frames with the key erased from the agent's cell.

    minigrid draws what the agent carries in its own cell (column 3, row 6 of the view)
    and an empty cell as (1, 0, 0): the counterfactual differs in the has-key bit only.
    """
    labels = rollouts.labels
    clean = rollouts[np.flatnonzero((labels["has_key"] == 1) & (labels["door_open"] == 0))]
    erased = clean.obs.copy()
    erased[:, AGENT_CELL[0], AGENT_CELL[1], :] = (1, 0, 0)
    return clean, rli_core.ObsSet(erased, labels=dict(clean.labels))


def _receptive(layer_index: int, shape: tuple[int, int]) -> set[tuple[int, int]]:
    """Positions of a conv feature map whose receptive field holds the agent's cell (2×2 kernels, stride 1)."""
    reach = {1: 1, 3: 2, 5: 3}[layer_index]  # a position (h, w) sees input rows h..h+reach, cols w..w+reach
    return {(h, w) for h in range(shape[0]) for w in range(shape[1])
            if h <= AGENT_CELL[0] <= h + reach and w <= AGENT_CELL[1] <= w + reach}


def test_patching_localises_the_has_key_bit(doorkey_policy, doorkey_rollouts):
    """Patch each conv position from the key-erased frame into the clean one; metric: the clean action's probability.

    Exploratory run: erasing the key moves the greedy action on 66% of these frames and
    drops its probability by 0.480 [0.460, 0.499]; at the last conv map one position,
    (2, 3), restores −0.168 (35% of it), at the second (2, 4) −0.089, at the first (3, 5)
    −0.172. Positions outside the agent cell's receptive field change nothing (|effect|
    < 1e-6: float rounding). Claim, per conv map: the largest-effect position lies in the
    receptive field, is significant (Holm over all positions of the three maps) and
    carries at least twice a uniform split of the total over the map's positions; no
    position outside the field has |effect| ≥ 1e-6. In the 64-unit feature layer the bit
    is spread out: no unit restores more than 10% of the total (exploration: 3%).
    Confirmed on the fresh rollouts: 316 pairs, total −0.488 [−0.511, −0.466]; conv 1
    (3, 5) −0.176, conv 2 (2, 4) −0.090, conv 3 (2, 3) −0.171.
    """
    from rli.patch_sweep import patch_sweep

    clean, erased = _has_key_pairs(doorkey_rollouts)
    assert len(clean) >= 100
    sweep = patch_sweep(doorkey_policy, clean, erased, metric="prob", over=("layer", "position"), layers=CONV_RELUS)
    print(sweep)
    assert sweep.total_ci[1] < 0, "erasing the key does not lower the clean action's probability"
    for index in CONV_RELUS:
        name = doorkey_policy.layers[index].name
        grid = sweep.layer_grid(name)
        inside = _receptive(index, grid.shape)
        outside = [abs(grid[h, w]) for h in range(grid.shape[0]) for w in range(grid.shape[1]) if (h, w) not in inside]
        assert max(outside) < 1e-6, f"{name}: a position outside the receptive field changes the metric"
        best = np.unravel_index(np.argmax(np.abs(grid)), grid.shape)
        rows = [i for i, layer in enumerate(sweep.layer) if layer == name]
        i = rows[int(np.ravel_multi_index(best, grid.shape))]
        assert tuple(int(v) for v in best) in inside
        assert sweep.significant[i] and sweep.ci[i, 1] < 0
        assert sweep.fraction[i] >= 2 / grid.size, f"{sweep.sites[i]} restores only {sweep.fraction[i]:.1%}"
    units = patch_sweep(doorkey_policy, clean, erased, metric="prob", over=("layer", "unit"), layers=[FEATURES])
    assert np.nanmax(np.abs(units.fraction)) < 0.10, units.top(3)


def _doors_opened(policy: rli_core.Policy, episodes: int, seed: int, intervention=None) -> np.ndarray:
    """Per episode, 1.0 if the agent opened the door (where it goes: through the wall toward the goal) else 0.0."""
    if intervention is None:
        rollouts = minigrid_obs(policy, episodes=episodes, seed=seed)
    else:
        with intervention:
            rollouts = minigrid_obs(policy, episodes=episodes, seed=seed)
    episode = rollouts.labels["episode"].astype(int)
    return np.array([rollouts.labels["door_open"][episode == e].max() for e in range(episodes)])


def test_subtracting_the_has_key_vector_keeps_the_agent_out_of_the_goal_room_is_not_confirmed(doorkey_policy,
                                                                                              doorkey_rollouts):
    """Steering vector at the 64 CNN features: mean(has key) − mean(no key) on the seed-2000 rollouts; steer −1×.

    Exploratory run (seeds 3000…, vector from seeds 500…, norm 19.7 against a mean feature
    norm of 33.9): unsteered, the agent opens the door in every episode; steered, in none
    (every episode runs to the 250-step limit, ending 3.3 cells from the goal instead of
    1.0). A random direction of the same norm also disturbs the policy (door opened in
    60% of episodes), so the claim is against that control, not against doing nothing
    alone. Claim on 20 fresh paired episodes (seeds 4000…): the door-opening rate falls
    under steering (paired CI of the drop above 0) and falls more than under the random
    vector (paired CI of the difference above 0).

    Not confirmed (2026-12-01): fit on the fresh rollouts the vector has norm 14.0 (cosine
    0.86 with the exploratory one); door opened: plain 0.95, steered 0.85, random vector
    0.95; drop 0.10 [−0.04, 0.24]. The exploratory effect came from the vector's length
    (at norm ≈ 20 even a random direction disrupts), not robustly from its direction. The
    coefficient was not retuned after this result. This test states that the claim is not
    confirmed (one of its two paired CIs reaches 0); should it become confirmed, the test
    fails and the docstring must be revised.
    """
    from rli.steering import steer, steering_vector

    labels = doorkey_rollouts.labels
    vector = steering_vector(doorkey_policy, FEATURES, doorkey_rollouts[labels["has_key"] == 1],
                             doorkey_rollouts[labels["has_key"] == 0], method="mean")
    rng = np.random.default_rng(0)
    random = rng.normal(size=vector.vector.shape)
    random *= vector.norm / np.linalg.norm(random)
    episodes, seed = 20, 4000
    plain = _doors_opened(doorkey_policy, episodes, seed)
    steered = _doors_opened(doorkey_policy, episodes, seed, steer(doorkey_policy, FEATURES, vector, -1.0))
    control = _doors_opened(doorkey_policy, episodes, seed, steer(doorkey_policy, FEATURES, random, -1.0))
    drop, versus = plain - steered, control - steered
    low, high = t_interval(drop)
    v_low, v_high = t_interval(versus)
    print(f"door opened: plain {plain.mean():.2f}, has-key vector {steered.mean():.2f}, random {control.mean():.2f}; "
          f"drop {drop.mean():.2f} [{low:.2f}, {high:.2f}], beyond random {versus.mean():.2f} [{v_low:.2f}, {v_high:.2f}]")
    assert not (low > 0 and v_low > 0), (f"the claim is now confirmed (drop CI [{low:.2f}, {high:.2f}], beyond random "
                                          f"[{v_low:.2f}, {v_high:.2f}]): revise the docstring and assert it")
