"""``rli sweep``: the command-line form of :func:`rli.runs.sweep`, configured by a sweep card (TOML or JSON).

Writes ``sweep.csv`` and ``sweep.json``, and ``sweep.html`` with the what–when–where picture
(:func:`rli.training_plots.what_when_where`) when the sweep has probe or profile rows.

A sweep card lists the analyses as :meth:`~rli.runs.specs.Spec.to_dict` writes them (paths
relative to the card)::

    [[analyses]]
    analysis = "profile"
    target = "obs[2]"
    obs = { env = "CartPole-v1", n = 500, seed = 0, episodes = 10 }

A checkpoint card (``<stem>.json`` with an ``"interrogate"`` block, as ``rli interrogate``
reads) works too: it gives a layer profile of its target on its ``probe_obs``.

Example:
    >>> import pathlib, tempfile
    >>> card = pathlib.Path(tempfile.mkdtemp()) / "card.toml"
    >>> _ = card.write_text('[[analyses]]\\nanalysis = "probe"\\ntarget = "obs[2]"\\nlayer = 1\\nobs = { path = "o.npz" }\\n')
    >>> [spec.obs.path == str(card.parent / "o.npz") for spec in read_sweep_card(card)]
    [True]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rli.errors import RliError
from rli.runs.specs import Spec, check_specs


def read_sweep_card(path: str | Path) -> tuple[Spec, ...]:
    """The analyses of a sweep card (``.toml`` or ``.json``); relative observation paths are taken from its folder."""
    path = Path(path)
    if not path.is_file():
        raise RliError(f"no such sweep card: {path}")
    try:
        card = _toml(path) if path.suffix == ".toml" else json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise RliError(f"the sweep card {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'} "
                       f"({err})") from None
    if not isinstance(card, dict):
        raise RliError(f"the sweep card {path} must hold an object, not {type(card).__name__}")
    if "analyses" in card:
        analyses = card["analyses"]
        if not isinstance(analyses, list):
            raise RliError(f"{path}: 'analyses' must be a list of analysis specs")
    elif "interrogate" in card:
        analyses = [_profile_from_checkpoint_card(card, path)]
    else:
        raise RliError(f"{path} has neither 'analyses' (a list of specs) nor an 'interrogate' block")
    return check_specs([_relative_to(dict(spec), path.parent) if isinstance(spec, dict) else spec
                        for spec in analyses])


def _toml(path: Path) -> Any:
    try:
        import tomllib  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # Python 3.10
        raise RliError(f"reading {path} needs Python 3.11 (tomllib); write the card as JSON instead") from None
    return tomllib.loads(path.read_text())


def _profile_from_checkpoint_card(card: dict[str, Any], path: Path) -> dict[str, Any]:
    from rli.protocol import DEFAULT_N_OBS, DEFAULT_OBS_EPISODES, card_settings

    settings = card_settings(card, where=str(path))
    if "target" not in settings:
        raise RliError(f"{path}: the 'interrogate' block names no target, so there is nothing to profile")
    obs = settings.get("probe_obs")
    if obs is None:
        if "env" not in settings:
            raise RliError(f"{path}: the card names neither probe_obs nor an env to collect observations in")
        obs = {"env": settings["env"], "n": DEFAULT_N_OBS, "seed": 0, "episodes": DEFAULT_OBS_EPISODES}
    return {"analysis": "profile", "obs": obs, "target": settings["target"]}


def _relative_to(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in ("obs",):
        value = spec.get(key)
        if isinstance(value, dict) and isinstance(value.get("path"), str) and not Path(value["path"]).is_absolute():
            spec[key] = {**value, "path": str(base / value["path"])}
    if isinstance(spec.get("reference"), str) and not Path(spec["reference"]).is_absolute():
        spec["reference"] = str(base / spec["reference"])
    return spec


def run_sweep_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``rli sweep`` (parsed by rli.cli): write ``sweep.csv``, ``sweep.json`` and, with R² rows, ``sweep.html``."""
    from rli.runs.executors import Processes, RayExecutor
    from rli.runs.sweep import sweep

    specs = read_sweep_card(args.card)
    executor: Any = {"inprocess": None, "processes": Processes(args.workers),
                     "ray": RayExecutor(num_cpus=args.workers)}[args.executor]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = sweep(args.checkpoints, specs, executor=executor, store=args.store, trust=args.trust,
                  progress=None)
    csv_path, json_path = table.to_csv(out / "sweep.csv"), table.to_json(out / "sweep.json")
    print(table)
    written = [str(csv_path), str(json_path)]
    html = _html_report(table, out)
    if html is None:
        print("no HTML report: the what-when-where picture needs probe or profile rows (metric r2)"
              if importlib.util.find_spec("rli.training_plots") is not None else
              "no HTML report: rli.training_plots (the what-when-where picture) is not available in this version")
    else:
        written.append(str(html))
    print(f"wrote {', '.join(written)}")
    return 1 if table.failures else 0


def _html_report(table: Any, out: Path) -> Path | None:
    """``out/sweep.html``: the what-when-where heat map (layer × step of held-out R²) above the table; None without."""
    if importlib.util.find_spec("rli.training_plots") is None:
        return None
    import base64
    import html

    from rli.training_plots import what_when_where

    records = [r for r in table.to_records() if r["metric"] == "r2" and r["layer"] is not None
               and r["target"] is not None]
    if not records:
        return None
    fig = what_when_where(records)
    picture = out / "what_when_where.png"
    fig.savefig(picture, dpi=110, bbox_inches="tight")
    encoded = base64.b64encode(picture.read_bytes()).decode()
    head = "".join(f"<th>{name}</th>" for name in records[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
                   for row in table.to_records())
    failures = "".join(f"<li>{html.escape(str(f))}</li>" for f in table.failures)
    page = (f"<!doctype html><meta charset='utf-8'><title>rli sweep</title><h1>rli sweep</h1>"
            f"<p>{html.escape(repr(table))}</p><img alt='what-when-where' src='data:image/png;base64,{encoded}'>"
            f"{'<h2>Failed units</h2><ul>' + failures + '</ul>' if failures else ''}"
            f"<h2>Rows</h2><table border='1'><tr>{head}</tr>{body}</table>")
    path = out / "sweep.html"
    path.write_text(page)
    return path


def _cell(value: Any) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
