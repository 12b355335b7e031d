"""The paper's four-step protocol (WakeRider §3.3) as tests on the checkpoints shipped in examples/checkpoints/.

Each test module overrides the rli fixtures (``rli_policy``, ``rli_obs``, ``rli_env``)
for its checkpoint, as any project would in its own conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import rli

CHECKPOINTS = Path(__file__).parent.parent / "checkpoints"


@pytest.fixture(scope="session")
def formation_policy() -> rli.Policy:
    """PPO on rli/FormationFlight-v0, seed 42 (see formation_ppo_seed42.json)."""
    return rli.load_policy(CHECKPOINTS / "formation_ppo_seed42.zip")


@pytest.fixture(scope="session")
def formation_rollouts(formation_policy: rli.Policy) -> rli.ObsSet:
    """4,000 observations the policy visits (episodes from seed 500), labelled with the env's noise-free info."""
    return rli.ObsSet.from_rollouts("rli/FormationFlight-v0", formation_policy, n=4000, seed=500)


@pytest.fixture(scope="session")
def halfcheetah_policy() -> rli.Policy:
    """PPO on HalfCheetah-v5, seed 0 (see halfcheetah_ppo_seed0.json)."""
    return rli.load_policy(CHECKPOINTS / "halfcheetah_ppo_seed0.zip")


@pytest.fixture(scope="session")
def halfcheetah_rollouts(halfcheetah_policy: rli.Policy) -> rli.ObsSet:
    """5,000 observations the policy visits (episodes from seed 500)."""
    return rli.ObsSet.from_rollouts("HalfCheetah-v5", halfcheetah_policy, n=5000, seed=500)
