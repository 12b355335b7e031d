"""Claims across training on the shipped formation series (examples/checkpoints/formation_run/, seeds 42-44).

Measured 2026-12-01 (ridge, 5 folds, reference grid; train_formation_run.py): layer 5's held-out R²
of the upwash is 0.796 [0.785, 0.807] at step 0 (the untrained network), 0.688 at 10k, 0.818 at 20k,
0.907 at 30k, 0.933 [0.929, 0.937] at 60k and 0.978 [0.974, 0.982] at 120k; at 120k seeds 43 and 44
give 0.980 and 0.982. The threshold 0.95 is the one of test_formation_claims.py (fixed before these
numbers were measured). Probing 8 checkpoints costs about a minute on 2 shared cores: slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import rli
from pytest_rli.run_assertions import assert_emerges_by, assert_stable_across, over_seeds
from rli.envs.formation import probe_grid
from rli.probes import probe

RUN = Path(__file__).parent.parent / "checkpoints" / "formation_run"
THRESHOLD = 0.95

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Layer 5 probed at every shipped checkpoint: the records a sweep's table would give."""
    grid = probe_grid(nominal="reference")
    rows = []
    for path in sorted(RUN.glob("seed_*/rl_model_*_steps.zip")):
        seed = int(path.parent.name.removeprefix("seed_"))
        step = int(path.stem.removeprefix("rl_model_").removesuffix("_steps"))
        result = probe(rli.load_policy(path), grid, "upwash", 5, controls=False)
        rows.append({"checkpoint": str(path.relative_to(RUN)), "step": step, "seed": seed, "analysis": "probe",
                     "layer": 5, "target": "upwash", "metric": result.metric, "value": result.score,
                     "ci_low": result.ci[0], "ci_high": result.ci[1], "spec_key": "probe:upwash:ridge"})
    return rows


def test_layer5_encodes_the_upwash_from_step_120k_on(records):
    """Emergence (first step whose CI lower bound clears 0.95 and stays above): step 120k, bracket (60k, 120k]."""
    found = assert_emerges_by(records, step=120_000, layer=5, target="upwash", min=THRESHOLD, seed=42)
    assert found.bracket == (60_000, 120_000)
    assert_stable_across(records, layer=5, target="upwash", min=THRESHOLD, seed=42)


def test_layer5_upwash_holds_across_training_seeds_at_120k(records):
    """IQM over seeds 42-44 at 120k: 0.980, stratified-bootstrap CI above 0.95."""
    est = over_seeds(records, "r2", layer=5, target="upwash", step=120_000)
    assert est.n_seeds == {"upwash": 3}
    assert est.ci[0] >= THRESHOLD, str(est)
