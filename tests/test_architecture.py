"""The package's structure, enforced: no module imports another's private names, the module-level import graph
has no cycles, ``import rli`` and ``rli --help`` import no heavy library, the version has one source, and the
reference environment is registered however gymnasium and rli are imported."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rli", "pytest_rli")
HEAVY = ("torch", "gymnasium", "matplotlib", "scipy", "sklearn")


# ------------------------------------------------------------------------------------------ the source tree
def _modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name (a package by its own name, for its __init__)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _module_level(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: top level, inside module-level if/try/with blocks, not inside
    functions or classes, not under ``if TYPE_CHECKING:`` (type checkers only)."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) or _type_checking(node):
            continue
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package modules an import statement imports (by name; parent packages' __init__ not counted)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    source = _absolute(module, node)
    out = {f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES}
    if source in MODULES and len(out) < len(node.names):
        out.add(source)
    return out


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(module: str, tree: ast.Module) -> list[str]:
    """``from rli.x import _name`` (anywhere in the module) and ``x._name`` on an imported package module, where
    x is another module of the packages."""
    found = []
    aliases: dict[str, str] = {}  # local name -> package module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
                elif source in MODULES and source != module and _private(alias.name):
                    found.append(f"{module}:{node.lineno} imports {alias.name} from {source}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            target = aliases.get(dotted, dotted) if dotted else None
            if target in MODULES and target != module:
                found.append(f"{module}:{node.lineno} uses {target}.{node.attr}")
    return found


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def import_graph() -> dict[str, set[str]]:
    return {name: set().union(*(_targets(name, n) for n in _module_level(tree))) - {name}
            for name, tree in TREES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_another_modules_private_names():
    found = [line for name, tree in TREES.items() for line in private_imports(name, tree)]
    assert found == [], "give these names a public home:\n" + "\n".join(found)


def test_the_module_level_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) == len(MODULES) > 50 and graph["rli.probes"] >= {"rli.ridge", "rli.capture"}
    assert cycles(graph) == []


def test_the_scanners_see_what_they_are_meant_to():
    """Each rule catches a planted violation (multi-line, relative, attribute and function-level forms)."""
    planted = ast.parse("from rli.probes import (\n    probe,\n    _secret,\n)\nfrom .ridge import _hidden\n"
                        "from rli import probes\nx = probes._other\n"
                        "def f():\n    from rli.capture import _late\n")
    assert private_imports("rli.polarity", planted) == [
        "rli.polarity:1 imports _secret from rli.probes", "rli.polarity:5 imports _hidden from rli.ridge",
        "rli.polarity:9 imports _late from rli.capture", "rli.polarity:7 uses rli.probes._other"]
    own = ast.parse("from rli.polarity import _cosine\n")
    assert private_imports("rli.polarity", own) == []
    tree = ast.parse("import rli.ridge\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rli import probes\n"
                     "try:\n    from . import capture\nexcept ImportError:\n    pass\ndef g():\n    import rli.stats\n")
    assert set().union(*(_targets("rli.polarity", n) for n in _module_level(tree))) == {"rli.ridge", "rli.capture"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_are_counted_apart():
    """Imports inside functions defer work (heavy libraries, the CLI's subcommands); they are not module edges."""
    deferred = {name: sum(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
                - len(_module_level(tree)) for name, tree in TREES.items()}
    assert deferred["rli.cli"] > 0
    assert all(count >= 0 for count in deferred.values())


# ------------------------------------------------------------------------------------------ fresh processes
def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


_LOADED = f"import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"


def test_import_rli_and_rli_help_import_no_heavy_library():
    assert _fresh(f"import rli; {_LOADED}") == "[]"
    helped = _fresh("import contextlib, io, sys\nfrom rli.cli import main\n"
                    "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
                    "    main(['--help'])\n"
                    "assert 'interrogate' in out.getvalue()\n" + _LOADED)
    assert helped == "[]"
    # the names are there when used; a submodule named like a function (rli.capture) does not replace it
    assert _fresh("import rli, sys; rli.probe; import rli.capture\n"
                  "print('torch' in sys.modules, callable(rli.probe), callable(rli.capture))") == "True True True"


def test_the_lazy_table_and_all_agree():
    assert sorted(rli.__all__) == sorted(set(rli.__all__))
    assert set(rli.__all__) <= set(dir(rli))
    for name in rli.__all__:
        assert getattr(rli, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        rli.not_a_name  # noqa: B018


def test_type_checkers_see_the_same_table():
    """The ``if TYPE_CHECKING:`` imports of rli/__init__.py name exactly the lazy table's names, from its modules."""
    seen = {}
    for node in ast.walk(TREES["rli"]):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in ast.walk(node):
                if isinstance(child, ast.ImportFrom):
                    for alias in child.names:
                        full = f"{child.module}.{alias.name}"
                        seen[alias.name] = full if full in MODULES else child.module
    table = {**rli._EXPORTS, **{name: f"rli.{name}" for name in rli._SUBMODULES}}
    assert seen == table


def test_the_version_comes_from_the_package_metadata():
    assert rli.__version__ == importlib.metadata.version("rli")
    assert "__version__ = \"" not in (ROOT / "rli" / "__init__.py").read_text()


@pytest.mark.parametrize(("first", "env_id"), [
    ("import rli", "rli/FormationFlight-v0"),  # gymnasium imported after rli: registered as it loads
    ("import gymnasium, rli", "rli/FormationFlight-v0"),  # gymnasium already loaded: registered at once
    ("import rli.envs", "rli/FormationFlight-v0"),
    ("import gymnasium", "rli.envs:rli/FormationFlight-v0"),  # no rli import at all: gymnasium imports rli.envs
])
def test_the_reference_env_is_registered_however_imported(first, env_id):
    """gymnasium 1.x has no plugin entry points (0.26-0.29's load_plugin_envs is gone), so a process that never
    imports rli names the registering module in the id."""
    made = _fresh(f"{first}\nimport gymnasium\nenv = gymnasium.make({env_id!r})\nprint(env.spec.max_episode_steps)")
    assert made == "400"


# ------------------------------------------------------------------------------------------ the fixture binding
def test_the_fixture_binding_is_derived_from_the_plain_assertions():
    """Each ``rli.assert_*`` method has the plain function's docstring and defaults (one place for each), with the
    test's policy / obs / env and target optional; help() shows the parameters."""
    import importlib
    import inspect
    import pydoc

    from pytest_rli.fixtures import RliBinding

    binding = RliBinding(request=None)  # type: ignore[arg-type]  # looking methods up needs no request
    names = [n for n in vars(RliBinding) if n.startswith("assert_")]
    assert len(names) == 11
    for name in names:
        module = importlib.import_module(vars(RliBinding)[name].module)
        method, plain = getattr(binding, name), getattr(module, name)
        assert method.__doc__ == plain.__doc__ and method.__wrapped__ is plain
        params, originals = inspect.signature(method).parameters, inspect.signature(plain).parameters
        assert set(params) == set(originals)
        for key in vars(RliBinding)[name].fixtures:
            assert params[key].default is None
        for key, param in originals.items():
            if param.default is not inspect.Parameter.empty and key not in ("obs", "target"):
                assert params[key].default == param.default, (name, key)
    assert list(inspect.signature(binding.assert_probe_r2).parameters)[:3] == ["layer", "min", "target"]
    assert inspect.signature(binding.assert_ablation_degrades).parameters["min_drop"].default == 0.05
    shown = pydoc.render_doc(binding.assert_ablation_degrades, renderer=pydoc.plaintext)
    assert re.search(r"assert_ablation_degrades\(layer.*min_drop(: \S+)? ?= ?0\.05", shown), shown[:400]
    with pytest.raises(TypeError, match="missing a required argument: 'layer'"):
        binding.assert_probe_r2()
