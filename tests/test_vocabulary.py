"""One argument vocabulary (issue #18): renamed arguments keep working for one release, with a DeprecationWarning.

For every rename: the old keyword gives bit-identical results to the new one and warns (naming the
function, both names, and the caller's line); both names at once are an RliError raised before any
work; the positional calls of DESIGN.md do not warn. Then the repository itself: no call in rli/,
pytest_rli/, docs/, examples/ or the README uses an old name, and docs and examples pass the
intervention of evaluate/compare by keyword.
"""

from __future__ import annotations

import ast
import doctest
import functools
import importlib
import inspect
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli.comparison import compare
from rli.deprecation import renamed_arguments, warn_deprecated
from rli.interventions import ablate, erase, keep_subspace, mean_ablate, reflect
from rli.polarity import negate_sensors, polarity_test
from rli.probes import probe, probe_layers
from rli.rollout import evaluate
from rli.subspace import fit_pca, project_subspace
from rli.wrappers import NegateSensors, SensorDelay, SensorDropout, SensorNoise
from tests.doc_examples import python_blocks, run_blocks

ROOT = Path(__file__).parent.parent
HERE = str(Path(__file__).resolve())


@functools.cache
def _policy() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 2)), env="CartPole-v1")


@functools.cache
def _obs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(240, 4))


def _state(policy: rli.Policy) -> tuple[list[torch.Tensor], int]:
    """Parameters (copies) and the number of forward hooks on the network."""
    hooks = sum(len(m._forward_hooks) for m in policy.module.modules())
    return [p.detach().clone() for p in policy.module.parameters()], hooks


def _same_state(policy: rli.Policy, before: tuple[list[torch.Tensor], int]) -> bool:
    params, hooks = _state(policy)
    return hooks == before[1] and all(torch.equal(a, b) for a, b in zip(params, before[0]))


def _effect(made: rli.Intervention) -> tuple[str, np.ndarray]:
    """What an intervention does, exactly: its description and the layer's output under it."""
    with made:
        acts = rli.capture(made.policy, _obs()[:32], layers=[1])[1]
    return made.describe(), acts


def _trajectory(env: gym.Env) -> np.ndarray:
    rows = [env.reset(seed=3)[0]]
    for _ in range(5):
        rows.append(env.step(env.action_space.sample() * 0)[0])
    return np.array(rows)


# --------------------------------------------------------------------------- the helper itself
@renamed_arguments(old="new", before="after")
def _demo(a, new=None, *, after=None):
    return a, new, after


def test_helper_maps_old_to_new_warns_at_the_callers_line_and_refuses_both():
    with pytest.warns(DeprecationWarning, match=r"^_demo\(\): the argument old= is renamed new=; old= will stop") as got:
        assert _demo(1, old=2) == (1, 2, None)
    assert len(got) == 1 and got[0].filename == HERE  # attributed to this line, not to rli
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _demo(1, 2, after=3) == _demo(1, new=2, after=3) == (1, 2, 3)
    for call in (lambda: _demo(1, 2, old=2), lambda: _demo(1, new=2, old=2), lambda: _demo(1, after=1, before=1)):
        with pytest.raises(rli.RliError, match=r"got both (old|before)= \(its old name\) and (new|after)=; pass"):
            call()
    assert inspect.signature(_demo) == inspect.signature(_demo.__wrapped__)
    assert _demo.__rli_renamed__ == {"old": "new", "before": "after"}


def test_helper_refuses_a_mapping_that_does_not_fit_the_function():
    with pytest.raises(TypeError, match="does not fit"):
        renamed_arguments(old="missing")(_demo.__wrapped__)
    with pytest.raises(TypeError, match="does not fit"):
        renamed_arguments(a="new")(_demo.__wrapped__)  # the old name must be gone from the signature


def test_warn_deprecated_points_at_the_callers_caller():
    def library_function():
        warn_deprecated("gone soon")

    with pytest.warns(DeprecationWarning, match="gone soon") as got:
        library_function()
    assert got[0].filename == HERE and got[0].lineno == inspect.currentframe().f_lineno - 1


# --------------------------------------------------------------------------- every rename
def _basis() -> np.ndarray:
    return fit_pca(rli.capture(_policy(), _obs(), layers=[1])[1], 2)[0]


#: (function, new-name call, old-name call, how to compare two results); one row per renamed argument
RENAMES = {
    "reflect w": (reflect, lambda: reflect(_policy(), 1, direction=_basis()[:, 0]),
                  lambda: reflect(_policy(), 1, w=_basis()[:, 0]), _effect),
    "mean_ablate basis": (mean_ablate, lambda: mean_ablate(_policy(), 1, direction="pc1-2", obs=_obs()),
                          lambda: mean_ablate(_policy(), 1, basis="pc1-2", obs=_obs()), _effect),
    "mean_ablate reference_obs": (mean_ablate, lambda: mean_ablate(_policy(), 1, "pc1", obs=_obs()),
                                  lambda: mean_ablate(_policy(), 1, "pc1", reference_obs=_obs()), _effect),
    "keep_subspace basis": (keep_subspace, lambda: keep_subspace(_policy(), 1, direction=_basis()),
                            lambda: keep_subspace(_policy(), 1, basis=_basis()), _effect),
    "keep_subspace reference_obs": (keep_subspace, lambda: keep_subspace(_policy(), 1, "pc1-3", obs=_obs()),
                                    lambda: keep_subspace(_policy(), 1, "pc1-3", reference_obs=_obs()), _effect),
    "project_subspace basis": (project_subspace, lambda: project_subspace(_obs(), direction=np.eye(4)[:, :2]),
                               lambda: project_subspace(_obs(), basis=np.eye(4)[:, :2]), lambda r: r),
    "negate_sensors indices": (negate_sensors, lambda: negate_sensors(_obs(), sensors=[0, 2]),
                               lambda: negate_sensors(_obs(), indices=[0, 2]), lambda r: r),
    **{f"{cls.__name__} indices": (cls, functools.partial(lambda c, a: c(gym.make("CartPole-v1"), sensors=[1, 3], **a),
                                                         cls, extra),
                                   functools.partial(lambda c, a: c(gym.make("CartPole-v1"), indices=[1, 3], **a),
                                                     cls, extra),
                                   lambda env: (env.sensors, _trajectory(env)))
       for cls, extra in [(SensorNoise, {"sigma": 0.3}), (SensorDropout, {"p": 0.5}), (SensorDelay, {"steps": 2}),
                          (NegateSensors, {})]},
}


def _plots_case():
    from rli import plots

    def points(fig):
        return fig.axes[0].collections[0].get_offsets().data

    acts = rli.capture(_policy(), _obs(), layers=[1])[1]
    return (plots.pca_scatter, lambda: plots.pca_scatter(acts, _obs()[:, 0], direction=_basis()),
            lambda: plots.pca_scatter(acts, _obs()[:, 0], basis=_basis()), points)


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    return a == b


@pytest.mark.parametrize("case", [*RENAMES, "pca_scatter basis"])
def test_old_name_works_warns_and_gives_identical_results(case):
    func, new, old, outcome = _plots_case() if case == "pca_scatter basis" else RENAMES[case]
    name, argument = case.split()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = outcome(new())
    with pytest.warns(DeprecationWarning, match=rf"^{name}\(\): the argument {argument}= is renamed ") as got:
        result = outcome(old())
    assert [w.filename for w in got] == [HERE]  # one warning, pointing at the user's call
    assert _equal(result, expected), case
    assert argument in (func.__init__ if inspect.isclass(func) else func).__rli_renamed__


def test_every_rename_is_tested_and_documented():
    """Each `renamed_arguments` mapping on a public function has a row above and a row in docs/migration.md."""
    tested = {tuple(case.split()) for case in [*RENAMES, "pca_scatter basis"]}
    table = (ROOT / "docs" / "migration.md").read_text().split("## Renamed arguments")[1]
    found = set()
    for module in ["rli.interventions", "rli.subspace", "rli.polarity", "rli.plots", "rli.wrappers", "rli.probes",
                   "rli.comparison", "rli.rollout", "rli.erasure", "rli.sweeps", "rli.steering", "rli.capture"]:
        for name, obj in vars(importlib.import_module(module)).items():
            target = getattr(obj, "__init__", None) if inspect.isclass(obj) else obj
            for old, new in getattr(target, "__rli_renamed__", {}).items():
                found.add((name, old))
                assert re.search(rf"`(rli\.(\w+\.)?)?{name}`[^\n]*`{old}=`[^\n]*`{new}=`", table), (name, old, new)
    assert found == tested


@pytest.mark.parametrize("call, message", [
    (lambda: reflect(_policy(), 1, [1.0] * 12, w=[1.0] * 12), "reflect.. got both w="),
    (lambda: mean_ablate(_policy(), 1, "pc1", _obs(), reference_obs=_obs()), "mean_ablate.. got both reference_obs="),
    (lambda: mean_ablate(_policy(), 1, direction="pc1", basis="pc1", obs=_obs()), "mean_ablate.. got both basis="),
    (lambda: keep_subspace(_policy(), 1, "pc1", obs=_obs(), reference_obs=_obs()), "got both reference_obs="),
    (lambda: negate_sensors(_obs(), [0], indices=[0]), "negate_sensors.. got both indices= .its old name. and sensors="),
    (lambda: SensorNoise(gym.make("CartPole-v1"), [0], 0.1, indices=[0]), "SensorNoise.. got both indices="),
])
def test_both_names_is_an_error_before_any_work(call, message):
    policy = _policy()
    before = _state(policy)
    with pytest.raises(rli.RliError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
    assert _same_state(policy, before)


def test_an_interrupt_under_an_old_name_leaves_the_network_as_it_was():
    policy = _policy()
    before = _state(policy)

    def interrupt(*args):
        raise KeyboardInterrupt

    handle = policy.module[0].register_forward_hook(interrupt)  # mid-capture of the reference observations
    try:
        with pytest.raises(KeyboardInterrupt), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mean_ablate(policy, 1, "pc1", reference_obs=_obs())
    finally:
        handle.remove()
    assert [w.category for w in caught] == [DeprecationWarning]
    assert _same_state(policy, before)


def test_renamed_wrapper_attribute_warns_and_reads_the_same():
    env = NegateSensors(gym.make("CartPole-v1"), [3, 1])
    with pytest.warns(DeprecationWarning, match=r"NegateSensors.indices is renamed .sensors") as got:
        old = env.indices
    assert got[0].filename == HERE and np.array_equal(old, env.sensors) and env.sensors.tolist() == [3, 1]


# --------------------------------------------------------------------------- ProbeResult.score
def test_probe_score_r2_and_the_logistic_deprecation():
    policy, obs = _policy(), _obs()
    ridge = probe(policy, obs, obs[:, 0], 1, controls=False)
    logistic = probe(policy, obs, (obs[:, 1] > 0).astype(int), 1, kind="logistic", controls=False, alphas=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ridge.metric == "r2" and ridge.r2 == ridge.score == float(np.mean(ridge.fold_scores))
        assert logistic.metric == "accuracy" and logistic.score == float(np.mean(logistic.fold_scores))
        data = logistic.to_dict()
    assert data["score"] == data["r2"] == logistic.score and ridge.to_dict()["r2"] == ridge.score
    with pytest.warns(DeprecationWarning, match=r"ProbeResult.r2 of a logistic probe is its accuracy; use .score") as got:
        assert logistic.r2 == logistic.score
    assert got[0].filename == HERE
    assert "held-out accuracy" in str(logistic) and f"{logistic.score:.3f}" in str(logistic)


def test_layer_profile_scores_and_the_logistic_deprecation():
    policy, obs = _policy(), _obs()
    labels = (obs[:, 1] > 0).astype(int)
    ridge = probe_layers(policy, obs, obs[:, 0], [0, 1], controls=False)
    logistic = probe_layers(policy, obs, labels, [0, 1], kind="logistic", controls=False, alphas=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ridge.r2 == ridge.scores == tuple(r.score for r in ridge.results)
        assert logistic.scores == tuple(r.score for r in logistic.results)
        assert logistic.deltas == (logistic.scores[1] - logistic.scores[0],)
        data, text = logistic.to_dict(), str(logistic)
    assert data["scores"] == data["r2"] == list(logistic.scores) and "acc" in text
    with pytest.warns(DeprecationWarning, match=r"LayerProfile.r2 of logistic probes holds their accuracy"):
        assert logistic.r2 == logistic.scores


# --------------------------------------------------------------------------- positional calls and keywords
def test_design_md_positional_calls_do_not_warn_and_equal_the_keyword_calls():
    policy, obs = _policy(), _obs()
    basis = _basis()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairs = [
            (_effect(reflect(policy, 1, basis[:, 0])), _effect(reflect(policy, layer=1, direction=basis[:, 0]))),
            (_effect(mean_ablate(policy, 1, basis, obs)), _effect(mean_ablate(policy, layer=1, direction=basis, obs=obs))),
            (_effect(keep_subspace(policy, 1, basis, obs)),
             _effect(keep_subspace(policy, layer=1, direction=basis, obs=obs))),
            (_effect(ablate(policy, 1, basis, 0.5)), _effect(ablate(policy, layer=1, direction=basis, alpha=0.5))),
            (_effect(erase(policy, 1, obs, obs[:, 0])), _effect(erase(policy, layer=1, obs=obs, concept=obs[:, 0]))),
            (negate_sensors(obs, [1]), negate_sensors(obs=obs, sensors=[1])),
            (project_subspace(obs, np.eye(4)[:, :1]), project_subspace(obs, direction=np.eye(4)[:, :1])),
            (probe(policy, obs, obs[:, 0], 1, controls=False).score,
             probe(policy, obs=obs, target=obs[:, 0], layer=1, controls=False).score),
            (polarity_test(policy, obs, obs[:, 0], [0], 1).drop,
             polarity_test(policy, obs=obs, target=obs[:, 0], sensors=[0], layer=1).drop),
        ]
        cut = ablate(policy, 1, basis)
        positional = evaluate(policy, "CartPole-v1", 3, 0, cut)
        keyword = evaluate(policy, "CartPole-v1", episodes=3, seed=0, intervention=cut)
        paired = compare(policy, "CartPole-v1", cut, 3, 0)
        paired_keyword = compare(policy, "CartPole-v1", intervention=cut, episodes=3, seed=0)
    for first, second in pairs:
        assert _equal(first, second)
    assert positional.returns.tolist() == keyword.returns.tolist() == paired.treated.returns.tolist()
    assert paired.to_dict() == paired_keyword.to_dict()


def _public_callables():
    for name in rli.__all__:
        obj = getattr(rli, name)
        if inspect.isfunction(obj):
            yield name, obj


def test_public_signatures_use_the_vocabulary_and_its_argument_order():
    """No public function of rli takes an old name; `layer` and `obs` are keyword-able; builders (they return an
    Intervention, or sweep interventions through an env) take `layer` before `obs`, measuring functions after."""
    checked = 0
    for name, func in _public_callables():
        params = inspect.signature(func).parameters
        assert not {"w", "basis", "reference_obs", "indices"} & set(params), name
        for arg in ("layer", "obs"):
            if arg in params:
                assert params[arg].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        order = [p for p, v in params.items() if v.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
        if "layer" in order and "obs" in order:
            builder = "env" in order or inspect.signature(func).return_annotation == "Intervention"
            assert (order.index("layer") < order.index("obs")) == builder, name
            checked += 1
    assert checked >= 6  # probe, polarity_test, erase, mean_ablate, keep_subspace, ablation_curve, ...


# --------------------------------------------------------------------------- the repository's own calls
#: function name -> its old argument names (from the renamed_arguments mappings, so a new rename is grepped too)
def _old_names() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for func, *_ in [*RENAMES.values(), _plots_case()]:
        target = func.__init__ if inspect.isclass(func) else func
        out.setdefault(func.__name__, set()).update(target.__rli_renamed__)
    return out


#: files owned by other engineers this round; the edits they need are listed in the session-5 report (issue #18)
_SCANNED = ["rli", "pytest_rli", "docs", "examples"]


def _files() -> list[Path]:
    paths = [ROOT / "README.md"]
    for top in _SCANNED:
        paths += sorted(p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md") and "checkpoints" not in p.parts)
    return paths


def _calls(source: str, first_line: int = 1, tree: ast.AST | None = None):
    """Every call in ``source`` (a module, a code block, a doctest example): (line, function name, call node)."""
    if tree is None:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name:
                yield first_line + node.lineno - 1, name, node


def _snippets(path: Path, text: str, wanted: re.Pattern = re.compile("")):
    """(first line, code, tree or None) of each piece of Python in a file that ``wanted`` finds something in: the
    module, its doctest examples, markdown blocks."""
    if path.suffix == ".py":
        tree = ast.parse(text)
        yield 1, text, tree
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value \
                    and wanted.search(node.value):
                for example in doctest.DocTestParser().get_examples(node.value):
                    yield node.lineno + example.lineno, example.source, None
    else:
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            if wanted.search(match.group(1)):
                yield text.count("\n", 0, match.start(1)) + 1, match.group(1), None


_INLINE = re.compile(r"\b(\w+)\(([^()`]*)\)")  # one-line calls in prose and inline code: name(arguments)
_POSITIONAL_INTERVENTION = {("compare", 3), ("compare", 4), ("compare", 5), ("evaluate", 5), ("evaluate", 6)}


@functools.cache
def _offences() -> tuple[str, ...]:
    old = _old_names()
    wanted = re.compile(rf"\b({'|'.join(sorted({*old, 'compare', 'evaluate'}))})\s*\(")
    found: dict[tuple[str, int], str] = {}
    for path in _files():
        where = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if not wanted.search(text):
            continue
        user_facing = not where.startswith(("rli/", "pytest_rli/"))  # docs, examples, README: intervention by keyword
        for first, code, tree in _snippets(path, text, wanted):
            for line, name, call in _calls(code, first, tree):
                used = {k.arg for k in call.keywords} & old.get(name, set())
                if used:
                    found[(where, line)] = f"{name}(): old name {', '.join(sorted(used))}="
                elif user_facing and (name, len(call.args)) in _POSITIONAL_INTERVENTION:
                    found[(where, line)] = f"{name}(): pass the intervention by keyword (intervention=...)"
        for number, line in enumerate(text.splitlines(), 1):
            for match in _INLINE.finditer(line):
                used = {arg for arg in old.get(match.group(1), ()) if re.search(rf"\b{arg}=", match.group(2))}
                if used and (where, number) not in found:
                    found[(where, number)] = f"{match.group(1)}(): old name {', '.join(sorted(used))}="
    lines = {}
    for (where, number), what in sorted(found.items()):
        source = (ROOT / where).read_text().splitlines()[number - 1].strip()
        lines[(where, number)] = f"{where}:{number}: {what}    {source}"
    return tuple(lines.values())


def test_the_grep_finds_old_names():
    """The scanner is not vacuous: it flags an old keyword in code, in a doctest, in markdown, and positional
    interventions in user-facing code."""
    old = _old_names()
    code = "rli.keep_subspace(p, 1, b,\n    reference_obs=o)\nreflect(p, 1, w=d)\nrli.compare(p, env, cut, 10, 0)\n"
    hits = [(line, name) for line, name, call in _calls(code)
            if {k.arg for k in call.keywords} & old.get(name, set()) or (name == "compare" and len(call.args) == 5)]
    assert hits == [(1, "keep_subspace"), (3, "reflect"), (4, "compare")]
    doc = 'def f():\n    """Example:\n        >>> rli.negate_sensors(x, indices=[1])\n    """\n'
    assert [(line, name) for first, c, _ in _snippets(Path("f.py"), doc) if first > 1
            for line, name, _ in _calls(c, first)] == [(3, "negate_sensors")]
    assert _INLINE.search("see `pca_scatter(acts, target, basis=...)` here").group(1) == "pca_scatter"


def test_repository_uses_the_new_names():
    offences = _offences()
    assert not offences, "old argument names (or a positional intervention) in the repository:\n" + "\n".join(offences)


# --------------------------------------------------------------------------- the docs page
def test_migration_page_examples_run_without_a_warning(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "migration.md").read_text().split("## Renamed arguments")[1]
    blocks = python_blocks(text)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_blocks(blocks, "docs/migration.md", tmp_path, monkeypatch, examples=False)
    assert namespace["angle"].metric == "accuracy"
