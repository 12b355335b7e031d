"""rli.runs without training: checkpoint names, specs (hash, JSON), the table, the store (atomic, concurrent, corrupt),
the ``rli sweep`` command and the ``rli_run`` fixture."""

from __future__ import annotations

import csv
import json
import multiprocessing
from pathlib import Path

import pytest

from rli.errors import RliError
from rli.runs import CKA, Ablation, Custom, Obs, Polarity, Probe, Profile, Store, SweepTable, discover, spec_from_dict
from rli.runs.checkpoints import Checkpoint
from rli.runs.table import COLUMNS

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
CARTPOLE = ROOT / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- checkpoints
def test_names_steps_and_seeds_from_paths_and_cards(tmp_path):
    _touch(tmp_path / "seed3" / "ppo_10_steps.zip")
    _touch(tmp_path / "seed3" / "ppo_9_steps.zip")
    _touch(tmp_path / "seed3" / "ppo_vecnormalize_9_steps.pkl")
    _touch(tmp_path / "s4" / "rl_model_100_steps.zip")
    _touch(tmp_path / "exp" / "final.zip")
    _touch(tmp_path / "exp" / "final.json", json.dumps({"seed": 7, "timesteps": 5000}))
    _touch(tmp_path / "exp" / "agent_seed12.zip")
    found = discover(str(tmp_path))
    got = {Path(c.path).relative_to(tmp_path).as_posix(): (c.step, c.seed) for c in found}
    assert got == {"seed3/ppo_9_steps.zip": (9, 3), "seed3/ppo_10_steps.zip": (10, 3),
                   "s4/rl_model_100_steps.zip": (100, 4), "exp/final.zip": (5000, 7), "exp/agent_seed12.zip": (None, 12)}
    by_name = {Path(c.path).name: c for c in found}
    assert by_name["ppo_9_steps.zip"].vecnormalize == str(tmp_path / "seed3" / "ppo_vecnormalize_9_steps.pkl")
    assert by_name["ppo_10_steps.zip"].vecnormalize is None
    steps = [c.step for c in found if c.run.endswith("seed3")]
    assert steps == [9, 10]  # numeric order, not 10 < 9 as strings


def test_list_keeps_order_and_drops_duplicates(tmp_path):
    a, b = _touch(tmp_path / "b_1_steps.zip"), _touch(tmp_path / "a_2_steps.zip")
    assert [c.path for c in discover([str(a), b, str(a)])] == [str(a), str(b)]


@pytest.mark.parametrize("bad, match", [("nothing/*.zip", "matches no file"), ("missing.zip", "no such checkpoint"),
                                        ([], "empty list"), (3, "must be a glob")])
def test_bad_checkpoints_name_the_pattern(tmp_path, bad, match):
    bad = str(tmp_path / bad) if isinstance(bad, str) else bad
    with pytest.raises(RliError, match=match):
        discover(bad)


def test_empty_run_directory(tmp_path):
    with pytest.raises(RliError, match="holds no checkpoint"):
        discover(str(tmp_path))


# -------------------------------------------------------------------------------------------------- specs
SPECS = [
    Probe(obs=Obs.grid("rli.envs:probe_grid", n_x=4, n_y=5, nominal="reference"), target="true_upwash", layer=5),
    Profile(obs=Obs.rollouts("CartPole-v1", n=200, seed=3, episodes=5), target="obs[2]", layers=(1, "actor.3")),
    Polarity(obs=Obs.file("grid.npz"), target="true_upwash", sensors=(12,), layer=5),
    Ablation(env="CartPole-v1", layer=3, obs=Obs.rollouts("CartPole-v1", n=100), direction="pc1-2", episodes=8),
    CKA(obs=Obs.file("grid.npz"), layer=5, other_layer=3),
    Custom(call="mymodule:analysis", kwargs={"k": [1, 2], "name": "x"}),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_specs_are_hashable_json_round_trip_and_keyed_stably(spec):
    text = json.dumps(spec.to_dict())
    again = spec_from_dict(json.loads(text))
    assert again == spec and hash(again) == hash(spec) and again.key() == spec.key()
    assert len({spec.key(), *(s.key() for s in SPECS if s != spec)}) == len(SPECS)


def test_key_changes_with_any_setting_including_seeds():
    base = SPECS[1]
    changed = [Profile(obs=Obs.rollouts("CartPole-v1", n=200, seed=4, episodes=5), target="obs[2]", layers=(1, "actor.3")),
               Profile(obs=base.obs, target="obs[2]", layers=(1, "actor.3"), seed=1),
               Profile(obs=base.obs, target="obs[1]", layers=(1, "actor.3"))]
    assert len({base.key(), *(c.key() for c in changed)}) == 4


def test_key_is_sha256_of_canonical_json_and_version():
    import hashlib

    import rli

    spec = SPECS[0]
    text = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    assert spec.key() == hashlib.sha256(f"{text}\nrli {rli.__version__}".encode()).hexdigest()


def test_file_observations_are_part_of_the_store_key(tmp_path):
    from rli.runs.store import unit_key

    path = _touch(tmp_path / "obs.npz", "one")
    spec = Probe(obs=Obs.file(path), target="x", layer=1)
    before = unit_key("f" * 64, spec)
    path.write_text("two")
    assert unit_key("f" * 64, spec) != before and unit_key("e" * 64, spec) != before


@pytest.mark.parametrize("bad, match", [
    ({"analysis": "nope"}, "unknown analysis"),
    ({"analysis": "probe", "obs": {"path": "a.npz"}, "target": "x", "layer": 1, "colour": 2}, "unknown setting"),
    ({"analysis": "probe", "obs": {"path": "a.npz"}, "target": "x"}, "layer"),
    ({"analysis": "probe", "obs": {"env": "CartPole-v1"}, "target": "x", "layer": 1}, "positive number"),
    ({"analysis": "cka", "obs": {"path": "a.npz"}, "layer": 1}, "exactly one of"),
    ({"analysis": "ablation", "env": "CartPole-v1", "layer": 1, "obs": {"path": "a.npz"}, "direction": "up"}, "pcK"),
])
def test_bad_specs_are_one_line_errors(bad, match):
    with pytest.raises(RliError, match=match):
        spec_from_dict(bad)


def test_non_serialisable_settings_are_refused():
    with pytest.raises(RliError, match="JSON-serialisable"):
        Obs.grid("rli.envs:probe_grid", nominal=object())


# -------------------------------------------------------------------------------------------------- table
def _row(**changes):
    row = dict(checkpoint="a.zip", step=1, seed=0, analysis="probe", layer="actor.1", target="t", metric="r2",
               value=0.5, ci_low=0.4, ci_high=0.6, spec_key="k")
    return {**row, **changes}


def test_table_contract_csv_pandas_filter(tmp_path):
    table = SweepTable([_row(), _row(step=2, value=float("nan"), ci_low=None, ci_high=None)])
    assert len(table) == 2 and [tuple(r) for r in table] == [COLUMNS, COLUMNS]
    assert table.filter(step=2).to_records()[0]["ci_low"] is None
    with open(table.to_csv(tmp_path / "t.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["value"] for r in rows] == ["0.5", "nan"] and rows[1]["ci_low"] == ""
    frame = table.to_pandas()
    assert list(frame.columns) == list(COLUMNS) and frame["value"].iloc[0] == 0.5
    data = json.loads(table.to_json(tmp_path / "t.json").read_text())
    assert data["records"][1]["value"] is None  # strict JSON
    records = table.to_records()
    records[0]["value"] = 9.0
    assert table.to_records()[0]["value"] == 0.5


@pytest.mark.parametrize("bad, match", [(_row(extra=1), "unexpected"), (_row(step="1"), "step"),
                                        (_row(value="x"), "number")])
def test_table_rejects_bad_rows(bad, match):
    with pytest.raises(RliError, match=match):
        SweepTable([bad])
    with pytest.raises(RliError, match="unknown column"):
        SweepTable([_row()]).filter(colour=1)


# -------------------------------------------------------------------------------------------------- store
def test_store_round_trip_and_corruption_is_detected(tmp_path):
    store = Store(tmp_path)
    key = "ab" * 32
    assert store.get(key).status == "missing"
    store.put(key, [_row()])
    assert store.get(key).rows == [_row()] and len(store) == 1
    path = store.path(key)
    path.write_text(path.read_text()[:-20])
    assert store.get(key).status == "corrupt" and "not valid JSON" in (store.get(key).problem or "")
    store.put(key, [_row()])
    path.write_text(path.read_text().replace("0.5", "0.7"))
    assert store.get(key).status == "corrupt" and "SHA-256" in (store.get(key).problem or "")
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind


def _hammer(root: str, writer: int, rounds: int) -> int:
    """Write and read the same keys as the other writer; count entries seen that were not whole."""
    store = Store(root)
    bad = 0
    for i in range(rounds):
        for k in range(4):
            key = f"{k:02x}" * 32
            store.put(key, [_row(value=float(writer * 1000 + i), step=k)] * 50)
            found = store.get(key)
            bad += found.status != "hit"
    return bad


def test_two_processes_writing_one_store_never_see_a_partial_entry(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        bad = pool.starmap(_hammer, [(str(tmp_path), 0, 40), (str(tmp_path), 1, 40)])
    assert bad == [0, 0]
    store = Store(tmp_path)
    assert len(store) == 4 and all(store.get(k).status == "hit" for k in store.keys())
    assert not list(tmp_path.rglob("*.tmp"))


def test_store_needs_a_directory(tmp_path):
    blocker = _touch(tmp_path / "file")
    with pytest.raises(RliError, match="result store"):
        Store(blocker / "sub")


# ------------------------------------------------------------------------------------ command and fixture
def test_cli_sweep_writes_csv_and_json(tmp_path, capsys):
    from rli.cli import main

    card = _touch(tmp_path / "card.toml", '[[analyses]]\nanalysis = "custom"\ncall = "tests.test_runs_support:counted"\n'
                                          'kwargs = { layer = 3 }\n')
    out = tmp_path / "out"
    code = main(["sweep", str(CARTPOLE), "--card", str(card), "--out", str(out), "--store", str(tmp_path / "store"),
                 "--trust"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["seed"], r["metric"], r["layer"]) for r in rows] == [("0", "mean_activation", "actor.3")]
    assert json.loads((out / "sweep.json").read_text())["counts"]["computed"] == 1
    assert "no HTML report" in printed.out or (out / "sweep.html").exists()
    assert main(["sweep", str(CARTPOLE), "--card", str(card), "--out", str(out)]) == 1  # custom code needs --trust
    assert "trust" in capsys.readouterr().out


def test_cli_sweep_bad_card_is_one_line_error(tmp_path):
    from rli.cli import main

    card = _touch(tmp_path / "card.json", json.dumps({"analyses": [{"analysis": "probe"}]}))
    assert main(["sweep", str(CARTPOLE), "--card", str(card)]) == 1


def test_rli_run_fixture_sweeps_the_ini_checkpoints(pytester):
    import rli  # noqa: F401 — import torch once: pytester's in-process runs cannot re-import it

    pytester.makeini(f"[pytest]\nrli_checkpoints = {CARTPOLE}\nrli_trust = true\n")
    pytester.makepyfile(test_run="""
        from rli.runs import Custom

        def test_sweep(rli_run):
            spec = Custom(call="tests.test_runs_support:counted")
            table = rli_run.sweep(spec)
            assert rli_run.sweep(spec) is table  # computed once per session
            assert [c.seed for c in rli_run.checkpoints] == [0]
            assert [r["metric"] for r in table] == ["mean_activation"] and not table.failures
    """)
    pytester.syspathinsert(ROOT)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_checkpoint_dataclass_is_plain_data():
    c = Checkpoint(path="a.zip", step=1, seed=2, run=".")
    assert c.to_dict() == {"path": "a.zip", "step": 1, "seed": 2, "run": ".", "vecnormalize": None}


# ------------------------------------------------------------------------- each spec against its rli function
@pytest.fixture(scope="module")
def cartpole():
    from rli.loading import load_policy

    return load_policy(CARTPOLE)


@pytest.fixture(scope="module")
def cartpole_obs(tmp_path_factory):
    import numpy as np

    from rli.observations import ObsSet

    path = tmp_path_factory.mktemp("obs") / "obs.npz"
    ObsSet(np.random.default_rng(0).normal(scale=(1, 0.5, 0.1, 0.5), size=(200, 4)).astype(np.float32)).save(path)
    return path


def test_ablation_spec_rows_are_rli_compare(cartpole, cartpole_obs):
    from rli.comparison import compare
    from rli.interventions import ablate
    from rli.observations import ObsSet

    spec = Ablation(env="CartPole-v1", layer=3, obs=Obs.file(cartpole_obs), episodes=4, seed=0, max_steps=40)
    rows = {r["metric"]: r for r in spec.run(cartpole)}
    cut = ablate(cartpole, 3, "pc1", obs=ObsSet.load(cartpole_obs))
    direct = compare(cartpole, "CartPole-v1", cut, episodes=4, seed=0, progress=False, max_steps=40)
    assert rows["drop"]["value"] == direct.drop and (rows["drop"]["ci_low"], rows["drop"]["ci_high"]) == direct.ci
    assert rows["relative_drop"]["value"] == direct.relative_drop and rows["drop"]["layer"] == "actor.3"


def test_cka_and_polarity_spec_rows_are_the_rli_functions(cartpole, cartpole_obs):
    from rli.capture import capture
    from rli.observations import ObsSet
    from rli.polarity import polarity_test
    from rli.similarity import cka

    obs = ObsSet.load(cartpole_obs)
    rows = CKA(obs=Obs.file(cartpole_obs), layer=3, other_layer=1, n_boot=100, n_permutations=100).run(cartpole)
    acts = capture(cartpole, obs, [1, 3])
    direct = cka(acts[3], acts[1], n_boot=100, n_permutations=100, seed=0)
    assert [r["metric"] for r in rows] == ["cka", "p_value"]
    assert rows[0]["value"] == direct.value and (rows[0]["ci_low"], rows[0]["ci_high"]) == direct.ci
    assert rows[1]["value"] == direct.p_value
    rows = Polarity(obs=Obs.file(cartpole_obs), target="obs[2]", sensors=(2,), layer=3).run(cartpole)
    flipped = polarity_test(cartpole, obs, "obs[2]", [2], 3)
    assert {r["metric"]: r["value"] for r in rows} == {"r2_normal": flipped.r2_normal,
                                                       "r2_inverted": flipped.r2_inverted, "drop": flipped.drop}
