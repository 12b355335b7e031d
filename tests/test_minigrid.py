"""The MiniGrid DoorKey benchmark: registration, labels against the env's own state, the ObsSet builder, the
shipped CNN checkpoint (loads without trust, acts as SB3's predict), report sections, and docs/minigrid.md."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rli
from rli.envs.minigrid_env import AGENT_CELL, DOORKEY, LABELS, doorkey_labels, make_doorkey, minigrid_obs, region_masks
from rli.errors import RliError
from tests.doc_examples import python_blocks, run_blocks

minigrid = pytest.importorskip("minigrid")
from minigrid.core.constants import OBJECT_TO_IDX  # noqa: E402

ROOT = Path(__file__).parent.parent
CHECKPOINT = ROOT / "examples" / "checkpoints" / "minigrid_doorkey_ppo_seed0.zip"


@pytest.fixture(scope="module")
def policy() -> rli.Policy:
    return rli.load_policy(CHECKPOINT)


@pytest.fixture(scope="module")
def rollouts(policy: rli.Policy) -> rli.ObsSet:
    return minigrid_obs(policy, episodes=6, seed=100)


def test_registered_with_minigrid_spaces():
    spec = gym.spec(DOORKEY)
    assert spec.entry_point == "rli.envs.minigrid_env:make_doorkey"
    assert spec.max_episode_steps == 250
    env = gym.make(DOORKEY)
    assert env.observation_space.shape == (7, 7, 3) and env.observation_space.dtype == np.uint8
    assert env.action_space == gym.spaces.Discrete(7)
    reference = minigrid.wrappers.ImgObsWrapper(gym.make("MiniGrid-DoorKey-5x5-v0"))
    ours, _ = env.reset(seed=3)
    theirs, _ = reference.reset(seed=3)
    assert np.array_equal(ours, theirs)  # the same task as minigrid's own registration, seed for seed
    for action in (2, 1, 2, 3, 0, 2):
        a, b = env.step(action), reference.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]


def test_registering_does_not_import_minigrid(monkeypatch):
    """rli.envs registers the id by name only: running its body and looking the spec up imports no minigrid."""
    for name in [m for m in sys.modules if m == "minigrid" or m.startswith("minigrid.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.reload(importlib.import_module("rli.envs"))
    assert gym.spec(DOORKEY).entry_point and "minigrid" not in sys.modules


def test_missing_minigrid_is_a_one_line_rli_error(monkeypatch):
    for name in ("minigrid", "minigrid.envs", "minigrid.wrappers"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RliError, match=re.escape('pip install "rli[minigrid]"')):
        make_doorkey()


def test_labels_match_the_environment_state_and_its_own_encoding():
    """Random play over many seeds: every label against minigrid's state and its encoded view."""
    env = gym.make(DOORKEY)
    rng = np.random.default_rng(0)
    seen = {"key_visible": 0, "key_hidden": 0, "goal_visible": 0, "carried": 0, "door_open": 0}
    for episode in range(12):
        obs, info = env.reset(seed=episode)
        for _ in range(60):
            base = env.unwrapped
            assert set(LABELS) <= set(info)
            assert info["agent_dir"] == base.agent_dir
            assert (info["agent_x"], info["agent_y"]) == tuple(float(v) for v in base.agent_pos)
            world = base.grid.encode()  # (x, y, 3) codes of the whole room, minigrid's own encoding
            goal = np.argwhere(world[:, :, 0] == OBJECT_TO_IDX["goal"])[0]
            assert info["goal_distance"] == abs(goal - np.asarray(base.agent_pos)).sum()
            carrying = base.carrying is not None and base.carrying.type == "key"
            assert info["has_key"] == float(carrying)
            door = np.argwhere(world[:, :, 0] == OBJECT_TO_IDX["door"])[0]
            assert info["door_open"] == float(world[door[0], door[1], 2] == 0)  # minigrid: state 0 = open
            for name in ("key", "goal"):
                cells = np.argwhere(obs[:, :, 0] == OBJECT_TO_IDX[name])
                x, y = int(info[f"{name}_view_x"]), int(info[f"{name}_view_y"])
                if x >= 0:
                    assert [x, y] in cells.tolist()
                else:
                    assert cells.size == 0  # not drawn anywhere in the view
            if carrying:
                assert (info["key_view_x"], info["key_view_y"]) == AGENT_CELL
                assert obs[AGENT_CELL[0], AGENT_CELL[1], 0] == OBJECT_TO_IDX["key"]
            seen["key_visible"] += int(info["key_view_x"] >= 0 and not carrying)
            seen["key_hidden"] += int(info["key_view_x"] < 0)
            seen["goal_visible"] += int(info["goal_view_x"] >= 0)
            seen["carried"] += int(carrying)
            seen["door_open"] += int(info["door_open"])
            # pick up / open when possible, else random, so every label takes both values
            front = base.grid.get(*base.front_pos)
            kind = getattr(front, "type", None)
            action = 3 if kind == "key" else 5 if kind == "door" and carrying else int(rng.integers(3))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
    assert all(count > 0 for count in seen.values()), seen
    assert doorkey_labels(env, None) == {k: info[k] for k in LABELS}  # the visibility-mask path agrees


def test_labels_need_a_reset_doorkey_env():
    with pytest.raises(RliError, match="reset"):
        doorkey_labels(make_doorkey().unwrapped.__class__.__new__(make_doorkey().unwrapped.__class__))
    empty = gym.make("MiniGrid-Empty-5x5-v0")
    empty.reset(seed=0)
    with pytest.raises(RliError, match="DoorKey"):
        doorkey_labels(empty)


def test_obsset_builder_records_labels_and_episodes(policy, rollouts):
    evaluated = rli.evaluate(policy, DOORKEY, episodes=6, seed=100, progress=False)
    assert len(rollouts) == int(evaluated.lengths.sum())  # every visited step, same seeds as rli.evaluate
    assert np.bincount(rollouts.labels["episode"].astype(int)).tolist() == evaluated.lengths.astype(int).tolist()
    assert set(LABELS) <= set(rollouts.labels)
    held = rollouts.obs[:, AGENT_CELL[0], AGENT_CELL[1], 0] == OBJECT_TO_IDX["key"]
    assert np.array_equal(held, rollouts.labels["has_key"] == 1)
    assert rollouts.labels["has_key"].any() and (rollouts.labels["has_key"] == 0).any()
    assert len(minigrid_obs(CHECKPOINT, episodes=2, seed=100, n=10)) == 10


def test_obsset_builder_rejects_a_non_policy():
    with pytest.raises(RliError, match="checkpoint_or_policy"):
        minigrid_obs(object(), episodes=1, seed=0)


def test_region_masks(rollouts):
    masks = region_masks(rollouts)
    assert masks.shape == (len(rollouts), 7, 7)
    for name in ("key", "goal"):
        one = region_masks(rollouts, name)
        x = rollouts.labels[f"{name}_view_x"].astype(int)
        assert np.array_equal(one.sum(axis=(1, 2)), (x >= 0).astype(int))
        rows = np.flatnonzero(x >= 0)
        cells = np.argwhere(one[rows])
        codes = rollouts.obs[rows[cells[:, 0]], cells[:, 1], cells[:, 2], 0]
        assert np.all(codes == OBJECT_TO_IDX[name])
    assert np.array_equal(masks, region_masks(rollouts, "key") | region_masks(rollouts, "goal"))
    with pytest.raises(RliError, match="which"):
        region_masks(rollouts, "door")
    with pytest.raises(RliError, match="minigrid_obs"):
        region_masks(rli.ObsSet(rollouts.obs[:2]))


def test_checkpoint_loads_without_trust_and_matches_sb3_predict(policy, rollouts):
    from stable_baselines3 import PPO

    assert "features_extractor.cnn.0" in [layer.name for layer in policy.layers]
    model = PPO.load(CHECKPOINT, device="cpu")
    expected, _ = model.predict(rollouts.obs, deterministic=True)
    assert np.array_equal(policy.act(rollouts.obs), expected)
    card = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert card["fingerprint"] == policy.fingerprint and card["env"] == DOORKEY
    assert CHECKPOINT.stat().st_size <= 1_500_000


def test_report_sections(policy, rollouts):
    from rli.attribution import attribute
    from rli.patch_sweep import patch_sweep
    from rli.protocol.causal import attribution_section, patching_section
    from rli.report import Section

    result = attribute(policy, rollouts[::4], target="value", method="saliency")
    section = attribution_section(result)
    assert isinstance(section, Section) and section.title == "Attribution"
    best = max(result.shares.values(), key=lambda s: s.share)
    assert f"{best.name} {best.share:.3f}" in section.paragraphs[0]
    assert section.tables[0][1][0][0] == best.name
    clean = rollouts.obs[:12]
    sweep = patch_sweep(policy, clean, clean[::-1].copy(), metric="logit", over=("layer",), layers=[5, 8])
    text = patching_section(sweep).to_html()
    assert "Activation patching" in text and sweep.top(1)[0] in text
    with pytest.raises(RliError, match="PatchSweepResult"):
        patching_section(result)


def test_docs_page_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "minigrid.md").read_text()
    blocks = python_blocks(text)
    assert blocks
    run_blocks(blocks, "docs/minigrid.md", tmp_path, monkeypatch)
