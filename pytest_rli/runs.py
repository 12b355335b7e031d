"""The ``rli_run`` fixture: sweeps over the checkpoints named by the ``rli_checkpoints`` ini key, computed lazily.

``rli_run.sweep(analyses)`` runs :func:`rli.runs.sweep` once per session for those analyses
(later calls return the same table) with a result store in the session's temporary
directory, or in the ``rli_store`` ini key's directory to keep results between runs. Nothing
is imported from rli until the fixture is used::

    # pytest.ini
    [pytest]
    rli_checkpoints = runs/*/rl_model_*_steps.zip

    def test_upwash_emerges(rli_run):
        table = rli_run.sweep(rli.runs.Probe(obs=..., target="true_upwash", layer=5))
        assert max(r["value"] for r in table.filter(metric="r2")) > 0.9
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

INI = {
    "rli_checkpoints": ("checkpoints for the rli_run fixture: a glob, a run directory or a file (relative to the "
                        "rootdir)", None, ""),
    "rli_store": ("result store directory of rli_run sweeps (default: the session's temporary directory)", None, ""),
}


def checkpoint_pattern(config: pytest.Config) -> str | None:
    """The ``rli_checkpoints`` ini key, resolved against the rootdir (``None`` when unset)."""
    value = config.getini("rli_checkpoints")
    if not value:
        return None
    path = Path(str(value))
    return str(path if path.is_absolute() else config.rootpath / path)


def store_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The result store of ``rli_run`` sweeps and ``over="seeds"`` assertions: the ``rli_store`` ini key's directory
    (relative to the rootdir), else ``rli-store`` in the session's temporary directory."""
    value = config.getini("rli_store")
    if value:
        path = Path(str(value))
        return path if path.is_absolute() else config.rootpath / path
    return tmp_path_factory.getbasetemp() / "rli-store"


class RunHelper:
    """What ``rli_run`` yields: ``checkpoints`` (discovered on first use) and ``sweep(analyses, **options)``."""

    def __init__(self, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._config = config
        self._tmp = tmp_path_factory
        self._tables: dict[str, Any] = {}

    def _pattern(self) -> str:
        pattern = checkpoint_pattern(self._config)
        if pattern is None:
            pytest.fail("rli_run needs checkpoints: set the rli_checkpoints ini key (e.g. "
                        "rli_checkpoints = runs/*/rl_model_*_steps.zip)", pytrace=False)
        return pattern

    @property
    def checkpoints(self) -> list[Any]:
        """The :class:`rli.runs.Checkpoint` list of ``rli_checkpoints``."""
        from rli.runs.checkpoints import discover

        return discover(self._pattern())

    def _store(self) -> Path:
        return store_dir(self._config, self._tmp)

    def sweep(self, analyses: Any, **options: Any) -> Any:
        """:func:`rli.runs.sweep` of ``analyses`` over ``rli_checkpoints``, once per session per analyses/options."""
        __tracebackhide__ = True
        from rli.runs.specs import check_specs
        from rli.runs.sweep import sweep

        specs = check_specs(analyses)
        key = json.dumps([[s.key() for s in specs], sorted((k, repr(v)) for k, v in options.items())])
        if key not in self._tables:
            options.setdefault("store", self._store())
            options.setdefault("trust", bool(self._config.getini("rli_trust")))
            options.setdefault("progress", False)
            self._tables[key] = sweep(self._pattern(), specs, **options)
        return self._tables[key]


@pytest.fixture(scope="session")
def rli_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunHelper:
    """Lazily computed sweeps over the ``rli_checkpoints`` checkpoints (see :class:`RunHelper`)."""
    return RunHelper(request.config, tmp_path_factory)
