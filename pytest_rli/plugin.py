"""pytest-rli: interpretability claims as pytest tests (registered through the ``pytest11`` entry point).

This module only wires pytest to :mod:`pytest_rli.fixtures` and the metric recording;
importing it imports neither torch nor :mod:`rli`, so test runs that never use an rli
fixture pay nothing for the plugin. Per-test metrics travel on the test reports
(``user_properties``), which keeps the summary, baselines and reports right under
pytest-xdist.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_rli import baseline as baseline_file
from pytest_rli import history
from pytest_rli.fixtures import CACHE_KEY, SessionCache, rli, rli_env, rli_obs, rli_policy  # noqa: F401
from pytest_rli.recording import TestContext, recording
from pytest_rli.runs import INI as RUNS_INI
from pytest_rli.runs import rli_run  # noqa: F401

OPTION_POLICY = "--rli-policy"
OPTION_OBS = "--rli-obs"
OPTION_ENV = "--rli-env"
OPTION_BASELINE = "--rli-baseline"
OPTION_UPDATE = "--rli-update-baseline"
OPTION_REPORT = "--rli-report"
OPTION_ALLOW_MISSING = "--rli-allow-missing"
OPTION_ALLOW_UNUSED = "--rli-allow-unused"
OPTION_NO_HISTORY = "--rli-no-history"
OPTION_COMPARE = "--rli-compare"
UPDATE_MODES = ("new", "failing", "all")
COLLECTED_OUTPUT = "rli-collected"
METRICS_PROPERTY = "rli-metrics"

_INI: dict[str, tuple[str, Any, Any]] = {
    "rli_policy": ("policy checkpoint for the rli_policy fixture (relative to the rootdir)", None, ""),
    "rli_obs": ("observations for rli_obs: an ObsSet .npz or module:function", None, ""),
    "rli_env": ("gymnasium id for rli_env", None, ""),
    "rli_target": ("default probe target (a label name of rli_obs, or obs[I] for observation entry I)", None, ""),
    "rli_trust": ("allow full unpickling of the configured checkpoint (runs code stored in it)", "bool", False),
    "rli_episodes": ("default number of paired episodes for ablation assertions", None, "20"),
    "rli_seed": ("default seed for rollouts and observation collection", None, "0"),
    "rli_obs_size": ("observations collected from rollouts when rli_obs is unset", None, "5000"),
    "rli_obs_episodes": ("whole episodes those observations are spread over (a probe splits them by episode)",
                         None, "20"),
    "rli_baseline": ("baseline file (relative to the rootdir) used without --rli-baseline", None, ""),
    "rli_baseline_tolerance": ("absolute tolerance that judges a metric against its baseline when either side has "
                               "no CI (older baseline files); with CIs, non-overlapping intervals decide", None, "0.02"),
    "rli_allow_missing": ("metrics without a baseline entry do not fail the session", "bool", False),
    "rli_allow_unused": ("baseline entries no test used do not fail the session", "bool", False),
    "rli_history_dir": ("folder (relative to the rootdir) of the run history, NNNN_<commit>.json per session", None,
                        ".rli/runs"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rli", "rli: interpretability assertions for RL policies")
    group.addoption(OPTION_POLICY, dest="rli_policy", metavar="PATH",
                    help="policy checkpoint for the rli_policy fixture (overrides the rli_policy ini key)")
    group.addoption(OPTION_OBS, dest="rli_obs", metavar="SPEC",
                    help="observations for rli_obs: an ObsSet .npz or module:function (overrides rli_obs)")
    group.addoption(OPTION_ENV, dest="rli_env", metavar="ID", help="gymnasium id for rli_env (overrides rli_env)")
    group.addoption(OPTION_BASELINE, dest="rli_baseline", metavar="PATH",
                    help="compare every rli metric with the stored baseline and fail regressions beyond the tolerance")
    group.addoption(OPTION_UPDATE, dest="rli_update_baseline", nargs="?", const="all", default=None,
                    metavar="new|failing|all",
                    help="write the baseline instead of failing on it: new = add missing entries only, failing = "
                         "rewrite regressed and missing ones, all (the default) = rewrite every test that ran")
    group.addoption(OPTION_ALLOW_MISSING, dest="rli_allow_missing", action="store_true",
                    help="metrics without a baseline entry are reported but do not fail the session")
    group.addoption(OPTION_ALLOW_UNUSED, dest="rli_allow_unused", action="store_true",
                    help="baseline entries no test used are reported but do not fail the session")
    group.addoption(OPTION_NO_HISTORY, dest="rli_no_history", action="store_true",
                    help="do not write this session to the run history (rli_history_dir)")
    group.addoption(OPTION_COMPARE, dest="rli_compare", metavar="RUN",
                    help="compare this session's metrics with run RUN of the history (a number, 'last' or a path)")
    group.addoption(OPTION_REPORT, dest="rli_report", metavar="DIR",
                    help="write the session's rli metrics to DIR/report.json and DIR/report.html")
    for name, (help_text, kind, default) in {**_INI, **RUNS_INI}.items():
        parser.addini(name, help_text, type=kind, default=default)


@dataclass
class _State:
    """Plugin state for one session: the baseline and every metric reported so far."""

    baseline_path: Path | None
    baseline: dict[str, dict[str, Any]] | None
    tolerance: float
    update: str | None
    history_dir: Path | None = None
    reference: dict[str, Any] | None = None  # the run named by --rli-compare
    collected: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # nodeid -> outcome of every test whose call ran
    known: set[str] = field(default_factory=set)  # every collected nodeid, deselected ones included
    unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    written: Path | None = None


STATE_KEY = pytest.StashKey[_State]()


_PATH_OPTIONS = (OPTION_POLICY, OPTION_OBS, OPTION_BASELINE, OPTION_REPORT, OPTION_COMPARE)


def _check_ini_discovery(config: pytest.Config) -> None:
    """UsageError when pytest chose its rootdir / ini file from the value of an rli option.

    pytest looks for its ini file before it loads plugins, so in ``--rli-policy PATH``
    (two words) it cannot yet know that PATH belongs to ``--rli-policy`` and takes it
    for a test path: a PATH outside the project moves the rootdir above it, pytest.ini
    is missed, and every rli setting reads as unset. Decided again here from the real
    test paths; when the answer differs, say so (``--rli-policy=PATH`` is read right).
    """
    if hasattr(config, "workerinput"):
        return
    args = list(config.invocation_params.args)
    given = [(option, args[i + 1]) for i, option in enumerate(args[:-1]) if option in _PATH_OPTIONS]
    if not given:
        return
    from _pytest.config.findpaths import determine_setup

    option = config.option
    try:
        rootpath, inipath, *_ = determine_setup(
            inifile=option.inifilename, override_ini=option.override_ini, args=list(option.file_or_dir or []),
            rootdir_cmd_arg=option.rootdir or None, invocation_dir=config.invocation_params.dir)
    except pytest.UsageError:
        return  # pytest reports its own configuration errors
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    name, value = given[0]
    found = f"ini file {config.inipath}" if config.inipath is not None else "no ini file"
    raise pytest.UsageError(
        f"pytest read the value of {name} ({value!r}) as a test path while it looked for its configuration, "
        f"so it found {found} (rootdir {config.rootpath}) instead of {inipath or 'none'} (rootdir {rootpath}); "
        f"write {shlex.quote(f'{name}={value}')} (with '=') so pytest reads it as the option's value")


def pytest_configure(config: pytest.Config) -> None:
    _check_ini_discovery(config)
    config.addinivalue_line(
        "markers", "rli(policy=None, obs=None, env=None, target=None): what the rli fixtures use for this test")
    config.stash[CACHE_KEY] = SessionCache()
    path_spec = config.getoption("rli_baseline") or config.getini("rli_baseline") or None
    path = None if path_spec is None else (Path(path_spec) if Path(path_spec).is_absolute()
                                           else config.rootpath / path_spec)
    update = config.getoption("rli_update_baseline")
    if update is not None and update not in UPDATE_MODES:
        raise pytest.UsageError(f"{OPTION_UPDATE} takes new, failing or all, got {update!r}; to update everything "
                                f"and run a path, write {OPTION_UPDATE}=all {shlex.quote(update)}")
    if update is not None and path is None:
        raise pytest.UsageError(f"{OPTION_UPDATE} needs a baseline file: pass {OPTION_BASELINE}=PATH or set the "
                                "rli_baseline ini key")
    stored = None
    if path is not None:
        try:
            stored = baseline_file.read(path)
        except baseline_file.BaselineError as err:
            raise pytest.UsageError(str(err)) from None
    try:
        tolerance = float(config.getini("rli_baseline_tolerance"))
    except ValueError:
        raise pytest.UsageError("rli_baseline_tolerance must be a number") from None
    if not 0 <= tolerance < float("inf"):
        raise pytest.UsageError(f"rli_baseline_tolerance must be a finite number ≥ 0, got {tolerance}")
    try:
        config.getini("rli_trust")
    except (ValueError, pytest.UsageError) as err:
        raise pytest.UsageError(f"rli_trust must be true or false ({err})") from None
    for name, minimum, maximum, why in (("rli_episodes", 2, None, " (ablation assertions compare paired episodes)"),
                                        ("rli_seed", 0, 2**32 - 1, ""), ("rli_obs_size", 1, None, ""),
                                        ("rli_obs_episodes", 2, None,
                                         " (probes split rollout observations by episode)")):
        text = config.getini(name)
        try:
            number = int(text)
        except (TypeError, ValueError):
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"of at least {minimum}"
            raise pytest.UsageError(f"the {name} ini key must be an integer {bound}{why}, got {text!r}")
    history_dir = None if config.getoption("rli_no_history") else config.rootpath / config.getini("rli_history_dir")
    reference = None
    compare = config.getoption("rli_compare")
    if compare is not None and not hasattr(config, "workerinput"):
        try:
            reference = history.load(config.rootpath / config.getini("rli_history_dir"), compare)
        except history.HistoryError as err:
            raise pytest.UsageError(str(err)) from None
    config.stash[STATE_KEY] = _State(baseline_path=path, baseline=stored, tolerance=tolerance, update=update,
                                     history_dir=history_dir, reference=reference)
    config.pluginmanager.register(_Session(config), "rli-session")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    state = item.config.stash[STATE_KEY]
    stored = None if state.baseline is None else state.baseline.get(item.nodeid, {})
    context = TestContext(nodeid=item.nodeid, baseline=stored, tolerance=state.tolerance, update=state.update)
    try:
        with recording(context):
            return (yield)
    finally:
        if context.records:
            metrics = [metric.to_dict() for metric in context.records]
            item.user_properties.append((METRICS_PROPERTY, json.dumps(metrics)))
            for metric in context.records:
                item.user_properties.append((f"rli:{metric.key}:{metric.metric}", metric.value))


_RLI_MODULES = ("pytest_rli.assertions", "pytest_rli.fixtures")


def _rli_bad_input(error: BaseException) -> bool:
    """Whether ``error`` is an :class:`rli.RliError` raised inside an rli assertion or fixture (bad input,
    whose one-line message says what to do: a traceback through rli would only hide it)."""
    errors = sys.modules.get("rli.errors")  # an RliError exists only once rli is imported: never import it here
    if errors is None or not isinstance(error, errors.RliError):
        return False
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__") in _RLI_MODULES:
            return True
        frame = frame.tb_next
    return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if call.excinfo is not None and report.failed and not item.config.getoption("fulltrace", False) \
            and _rli_bad_input(call.excinfo.value):
        longrepr = call.excinfo.getrepr(style="value", chain=False)  # the message alone, as pytest.fail's
        crash = call.excinfo.getrepr(style="short", chain=False).reprcrash  # "RliError: ..." for the short summary
        longrepr.reprcrash = crash
        longrepr.chain = [(traceback, crash, description)  # type: ignore[union-attr]
                          for traceback, _, description in longrepr.chain]  # type: ignore[union-attr]
        report.longrepr = longrepr
    return report


def _whole_files(config: pytest.Config, known: set[str]) -> set[str]:
    """The test files of ``known`` node ids that this run collected whole (no ``file::test`` argument narrowed
    them), so a baseline entry of theirs that was not collected is of a test that no longer exists."""
    narrowed = set()
    for arg in config.args:
        if "::" in arg:
            path = Path(arg.split("::")[0])
            path = path if path.is_absolute() else config.invocation_params.dir / path
            try:
                narrowed.add(path.resolve().relative_to(config.rootpath.resolve()).as_posix())
            except ValueError:
                continue
    return {nodeid.split("::")[0] for nodeid in known} - narrowed


class _Session:
    """Session-level hooks, registered per config: collect metrics from reports, judge the baseline's unused and
    missing entries, write baselines, the run history and reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = config.stash[STATE_KEY]

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.state.known.update(item.nodeid for item in items)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.state.known.update(item.nodeid for item in items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: the controller collects nothing itself; each worker sends the node ids it collected."""
        self.state.known.update(json.loads(getattr(node, "workeroutput", {}).get(COLLECTED_OUTPUT, "[]")))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.state.outcomes.setdefault(report.nodeid, report.outcome)
        if report.when != "call":
            return
        self.state.outcomes[report.nodeid] = report.outcome
        for name, value in report.user_properties:
            if name == METRICS_PROPERTY:
                self.state.collected[report.nodeid] = {"outcome": report.outcome, "metrics": json.loads(str(value))}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = self.state
        if hasattr(self.config, "workerinput"):  # xdist workers report; only the controller writes files
            self.config.workeroutput[COLLECTED_OUTPUT] = json.dumps(sorted(state.known))  # type: ignore[attr-defined]
            return
        if state.baseline is not None:
            state.missing = baseline_file.missing(state.collected)
            state.unused = baseline_file.unused(state.baseline, state.collected, state.outcomes, state.known,
                                                _whole_files(self.config, state.known), self.config.rootpath)
        if state.update is not None and state.baseline_path is not None and state.collected:
            baseline_file.write(state.baseline_path, baseline_file.merge(state.baseline or {}, state.collected,
                                                                         state.update))
        elif state.update is None and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            missing = state.missing and not (self.config.getoption("rli_allow_missing")
                                             or self.config.getini("rli_allow_missing"))
            unused = state.unused and not (self.config.getoption("rli_allow_unused")
                                           or self.config.getini("rli_allow_unused"))
            if missing or unused:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if state.history_dir is not None and state.collected:
            from pytest_rli.report import history_tests

            state.written = history.write(state.history_dir, history_tests(state.collected),
                                          commit=history.commit(self.config.rootpath))
        report_dir = self.config.getoption("rli_report")
        if report_dir and state.collected:
            from pytest_rli.report import write_session_report

            write_session_report(Path(report_dir), state.collected)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        state = self.state
        if not state.collected and not state.unused:
            return
        from pytest_rli import report

        terminalreporter.section("rli metrics")
        for line in report.summary_lines(state.collected):
            terminalreporter.write_line(line)
        if state.update is not None and state.baseline_path is not None:
            mode = "" if state.update == "all" else f" ({OPTION_UPDATE}={state.update})"
            terminalreporter.write_line(f"rli: wrote baselines{mode} for {len(state.collected)} test(s) to "
                                        f"{state.baseline_path}")
        for line in report.baseline_lines(state.collected, state.unused, state.missing, state.update, {
                "missing": bool(self.config.getoption("rli_allow_missing") or self.config.getini("rli_allow_missing")),
                "unused": bool(self.config.getoption("rli_allow_unused") or self.config.getini("rli_allow_unused"))}):
            terminalreporter.write_line(line)
        if state.baseline is not None and state.update is None:
            unchecked = sorted(set(state.baseline) - set(state.collected) - {u.split(" ")[0] for u in state.unused})
            if unchecked:
                terminalreporter.write_line(f"rli: {len(unchecked)} stored baseline(s) not checked in this run "
                                            f"(not selected, skipped or failed): {report.listing(unchecked)}")
        if state.reference is not None:
            for line in report.compare_lines(state.collected, state.reference, state.tolerance):
                terminalreporter.write_line(line)
        if state.written is not None:
            terminalreporter.write_line(f"rli: run history written to {state.written}")
        report_dir = self.config.getoption("rli_report")
        if report_dir:
            terminalreporter.write_line(f"rli: report written to {Path(report_dir) / 'report.html'}")
