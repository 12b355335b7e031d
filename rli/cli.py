"""The ``rli`` command line: ``rli layers``, ``rli probe``, ``rli interrogate``.

Exit codes: 0 success, 1 bad input (an :class:`~rli.RliError`, or a module a checkpoint needs
that is missing, printed as one line ``rli: error: ...``), 2 usage (unknown flag, missing
argument), 130 interrupted, 141 stdout closed early (``rli layers ... | head``; nothing printed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rli import defaults  # standard library only: the help texts state the defaults

_POLICY_HELP = "SB3 .zip, TorchScript/torch .pt, or .safetensors file (its card <stem>.json, if any, supplies defaults)"
_TRUST_HELP = ("allow full unpickling of the checkpoint and observation functions outside rli "
               "(runs code stored in or named by the files); only for files you trust")
_OBS_HELP = ("observations: a .npz written by rli.ObsSet.save, or 'module:function' returning an rli.ObsSet "
             "(default: the card's, else observations the policy visits in --env)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rli", description="Interpretability assertions for RL policies.",
        epilog="Exit codes: 0 ok, 1 bad input (one line 'rli: error: ...'), 2 usage, 130 interrupted, 141 output "
               "closed early. Run 'rli COMMAND --help' "
               "for each command; docs/cli.md has the details.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    layers = commands.add_parser("layers", help="print the addressable layers of a policy",
                                 description="Print every addressable layer of a policy: actor-trunk index, "
                                             "aliases, dotted module name, module type and output width.")
    layers.add_argument("policy", help="SB3 .zip, TorchScript/torch .pt, or .safetensors file")
    layers.add_argument("--arch", help="architecture for bare weights: an MLP, e.g. 'mlp:28,256,256,128,4:elu', or "
                                       "'module:Class', your nn.Module class built without arguments (imports "
                                       "the module, so needs --trust)")
    layers.add_argument("--trust", action="store_true",
                        help="allow full unpickling (runs code stored in the file); only for files you trust")
    layers.add_argument("--json", action="store_true", help="print the table as JSON")

    probe = commands.add_parser(
        "probe", help="probe a layer (or every layer) for a target, with controls",
        description="Decode a target from a layer's activations with a held-out probe (K-fold CV, 95%% CI) and its "
                    "controls (untrained network, shuffled labels, raw observation). Prints the ProbeResult, or the "
                    "layer profile with --all-layers.",
        epilog="Example: rli probe examples/checkpoints/formation_ppo_seed42.zip --all-layers")
    probe.add_argument("policy", help=_POLICY_HELP)
    probe.add_argument("--env", help="gymnasium id the policy acts in (default: the card's); needed when the "
                                     "observations come from rollouts")
    probe.add_argument("--target", help="label to decode, or obs[I] for observation entry I (default: the card's, "
                                        "else the first numeric info entry of --env)")
    where = probe.add_mutually_exclusive_group()
    where.add_argument("--layer", help="actor-trunk index, alias (actor.5) or module name (default: the card's, else "
                                       "the last hidden layer)")
    where.add_argument("--all-layers", action="store_true", help="probe every actor layer (the layer profile)")
    probe.add_argument("--obs", help=_OBS_HELP)
    probe.add_argument("--n", type=_positive, metavar="N",
                       help=f"visited observations when probing rollouts (default: {defaults.N_OBS})")
    probe.add_argument("--episodes", type=_at_least_two, metavar="E",
                       help="whole episodes those observations are spread over; the probe splits them by episode, so "
                            f"it needs at least --folds of them (default: {defaults.OBS_EPISODES})")
    probe.add_argument("--seed", type=int, default=0,
                       help="seed of the folds and controls; rollouts start at this episode seed (default: %(default)s)")
    probe.add_argument("--kind", choices=("ridge", "lasso", "mlp", "logistic"), default="ridge",
                       help="probe model (default: %(default)s)")
    probe.add_argument("--folds", type=_positive, default=defaults.FOLDS, help="K of the K-fold split (default: %(default)s)")
    probe.add_argument("--no-controls", action="store_true", help="skip the controls (faster)")
    probe.add_argument("--json", action="store_true", help="print the result as JSON")
    probe.add_argument("--trust", action="store_true", help=_TRUST_HELP)

    inter = commands.add_parser(
        "interrogate", help="run the four-step protocol (and the causal evidence) and write an HTML/JSON report",
        description="Run the interrogation protocol (paper §3.3): (1) probe every layer with controls, (2) sensor "
                    "polarity inversion, (3) zero PC1 (and the top k directions) with paired episodes and a CI, "
                    "(4) search the minimal sufficient PCA subspace; then attribute the action (integrated gradients) "
                    "and patch every layer from a counterfactual. Writes DIR/report.html (self-contained), "
                    "DIR/report.json (every number) and the figures as PNG. Settings not given come from the "
                    "checkpoint card (<stem>.json beside it, its \"interrogate\" block), else are inferred.",
        epilog="Example: rli interrogate examples/checkpoints/formation_ppo_seed42.zip")
    inter.add_argument("policy", help=_POLICY_HELP)
    inter.add_argument("--env", help="gymnasium id the policy acts in (default: the card's; required without one)")
    inter.add_argument("--out", type=Path, metavar="DIR",
                       help="report directory (default: <checkpoint stem>-interrogation in the current directory)")
    inter.add_argument("--target", help="label to probe, or obs[I] for observation entry I (default: the card's, "
                                        "else the first numeric info entry of --env)")
    inter.add_argument("--layer", help="layer of all four steps: actor-trunk index, alias or module name (default: "
                                       "the card's, else the last hidden layer)")
    inter.add_argument("--sensors", type=_indices, metavar="I,J",
                       help="observation indices negated in the polarity step, e.g. 12 or 12,22 (default: the card's; "
                            "without any, the step is skipped)")
    inter.add_argument("--probe-obs", metavar="SPEC", help="observations of step 1; " + _OBS_HELP)
    inter.add_argument("--polarity-obs", metavar="SPEC", help="observations of step 2 (default: the card's, else "
                                                               "those of step 1); same forms as --probe-obs")
    inter.add_argument("--episodes", type=_at_least_two, metavar="N",
                       help=f"paired episodes per comparison in steps 3 and 4 (default: {defaults.EPISODES})")
    inter.add_argument("--seed", type=int, default=0, metavar="S",
                       help="seed of the probe folds and of the episodes (S..S+N-1, and S+N..S+2N-1 to confirm the "
                            "subspace); the visited observations come from the episodes after those (default: "
                            "%(default)s)")
    inter.add_argument("--n-obs", type=_positive, metavar="N",
                       help=f"visited observations for the probe and the PCA directions (default: {defaults.N_OBS})")
    inter.add_argument("--obs-episodes", type=_at_least_two, metavar="E",
                       help="whole episodes the visited observations are spread over; the probe splits them by "
                            f"episode (default: {defaults.OBS_EPISODES})")
    inter.add_argument("--candidates", type=_positive, default=defaults.CANDIDATES, metavar="K",
                       help="principal directions the subspace search may use (default: %(default)s)")
    inter.add_argument("--tolerance", type=float, default=defaults.TOLERANCE, metavar="T",
                       help="largest relative drop in return a sufficient subspace may cost (default: %(default)s)")
    inter.add_argument("--greedy", action="store_true",
                       help="greedy subspace search, as in the paper (slower: one evaluation per candidate per step); "
                            "default: add directions by explained variance and stop at the first sufficient one")
    inter.add_argument("--no-causal", action="store_true",
                       help="skip the causal evidence after step 4 (integrated gradients of the action, activation "
                            "patching from the sensors-negated or permuted observations); the report says so")
    inter.add_argument("--trust", action="store_true", help=_TRUST_HELP)

    runs = commands.add_parser(
        "sweep", help="run analyses over the checkpoints of training runs (CSV + JSON)",
        description="Run the analyses of a sweep card over many checkpoints (SB3 CheckpointCallback names give the "
                    "training steps) and write DIR/sweep.csv and DIR/sweep.json; docs/sweeps.md has the card format.",
        epilog="Example: rli sweep 'runs/*/rl_model_*_steps.zip' --card card.toml --executor ray --store .rli-store")
    runs.add_argument("checkpoints", help="a glob (quoted), a training-run directory or a checkpoint file")
    runs.add_argument("--card", required=True, metavar="FILE",
                      help="sweep card (.toml or .json) listing the analyses, or a checkpoint card with an "
                           "'interrogate' block (a layer profile of its target)")
    runs.add_argument("--executor", choices=("inprocess", "processes", "ray"), default="inprocess",
                      help="where the units run (default: %(default)s)")
    runs.add_argument("--workers", type=_positive, metavar="N", help="processes, or CPUs of a local Ray instance")
    runs.add_argument("--store", metavar="DIR", help="result store: finished units are reused, a rerun resumes")
    runs.add_argument("--out", default="sweep", metavar="DIR", help="output directory (default: %(default)s)")
    runs.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    return parser


def _or_default(value: int | None, name: str) -> int:
    """``value`` if the flag was given, else the default for ``name`` (:mod:`rli.defaults`, ``NAME``)."""
    return int(getattr(defaults, name.upper())) if value is None else value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _at_least_two(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError("a paired comparison needs at least 2 episodes")
    return value


def _indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected observation indices separated by commas (e.g. 12 or 12,22), "
                                         f"got {text!r}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rli")
    except PackageNotFoundError:
        return "unknown"


def _parse_arch(text: str | None, trust: bool = False) -> Any:
    """``--arch``: ``mlp:SIZES[:ACTIVATION]`` (an MLP spec) or ``module:Class`` (imported, so only with ``--trust``)."""
    from rli.errors import RliError

    if text is None:
        return None
    parts = text.split(":")
    if parts[0] != "mlp":
        return _import_arch(text, trust)
    if len(parts) not in (2, 3):
        raise RliError(f"--arch must look like 'mlp:28,256,4', 'mlp:28,256,4:elu' or 'module:Class', not {text!r}")
    try:
        sizes = [int(size) for size in parts[1].split(",")]
    except ValueError:
        raise RliError(f"--arch sizes must be integers separated by commas, not {parts[1]!r}") from None
    return {"mlp": sizes, "activation": parts[2] if len(parts) == 3 else "tanh"}


def _import_arch(text: str, trust: bool) -> Any:
    """The class (or factory) named by ``--arch module:Class``, imported from the current directory or sys.path."""
    import importlib

    from rli.errors import RliError

    module_name, _, name = text.partition(":")
    if not module_name or not name or ":" in name or not all(
            part.isidentifier() for part in module_name.split(".") + name.split(".")):
        raise RliError(f"--arch must look like 'mlp:28,256,4' (an MLP) or 'module:Class' (your nn.Module class, "
                       f"e.g. 'mynets:ResidualPolicy'), not {text!r}")
    if not trust:
        raise RliError(f"--arch {text} would import and run code from {module_name!r}; pass --trust if you trust it, "
                       "or describe an MLP as --arch mlp:28,256,4")
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise RliError(f"--arch {text}: cannot import {module_name!r} ({err}); run rli from the directory that holds "
                       "it or add it to PYTHONPATH") from None
    except Exception as err:  # noqa: BLE001 — whatever the user's module raises on import is reported in one line
        raise RliError(f"--arch {text}: importing {module_name!r} failed ({type(err).__name__}: {err})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        for part in name.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise RliError(f"--arch {text}: module {module_name!r} has no {name!r}") from None
    if not callable(found):
        raise RliError(f"--arch {text} is a {type(found).__name__}, not an nn.Module class or a factory")
    return found


def _layers(args: argparse.Namespace) -> int:
    import rli

    policy = rli.load_policy(args.policy, arch=_parse_arch(args.arch, args.trust), trust=args.trust)
    if args.json:
        print(json.dumps({"policy": repr(policy), "fingerprint": policy.fingerprint,
                          "layers": policy.layers.to_dict()}, indent=2))
    else:
        print(policy)
        print(policy.layers)
    return 0


def _probe(args: argparse.Namespace) -> int:
    import rli
    from rli import protocol

    setup = protocol.resolve_setup(args.policy, args.trust, {"env": args.env, "target": args.target,
                                                             "layer": args.layer, "probe_obs": args.obs})
    policy, settings = setup.policy, setup.settings
    layer = protocol.choose_layer(setup)  # names are checked before any rollout or capture
    given = protocol.check_names(setup, args.trust, what="--target")
    if given is not None:
        obs, described = given
        if "target" not in settings:
            raise rli.RliError(f"no target: give --target, one of the labels of {described} "
                               f"({', '.join(sorted(obs.labels)) or 'none'}) or obs[I] for observation entry I")
    else:
        env = protocol.need_env(setup, "the observations come from rollouts (no --obs)")
        obs, described = protocol.visited_obs(setup, env, n=_or_default(args.n, "n_obs"), seed=args.seed,
                                              episodes=_or_default(args.episodes, "obs_episodes"))
        protocol.settle_target(setup, env, obs, args.seed)
    obs = protocol.with_target(obs, settings["target"], what=f"the observations ({described})")
    target = settings["target"]
    options: dict[str, Any] = {"kind": args.kind, "controls": not args.no_controls, "seed": args.seed,
                               "folds": args.folds}
    if args.all_layers:
        result: Any = rli.probe_layers(policy, obs, target, **options)
    else:
        result = rli.probe(policy, obs, target, layer.name, **options)
    if args.json:
        print(json.dumps({"policy": policy.source, "fingerprint": policy.fingerprint, "observations": described,
                          "profile" if args.all_layers else "result": result.to_dict()}, indent=2))
    else:
        print(f"{policy}\nobservations: {described}")
        print(result)
    return 0


def _interrogate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import rli

    out = args.out if args.out is not None else Path(f"{Path(args.policy).stem}-interrogation")
    report = rli.interrogate(args.policy, args.env, target=args.target, layer=args.layer, sensors=args.sensors,
                             probe_obs=args.probe_obs, polarity_obs=args.polarity_obs,
                             episodes=_or_default(args.episodes, "episodes"), seed=args.seed,
                             n_obs=_or_default(args.n_obs, "n_obs"), obs_episodes=_or_default(args.obs_episodes,
                                                                                               "obs_episodes"),
                             tolerance=args.tolerance, candidates=args.candidates,
                             method="greedy" if args.greedy else "ordered", causal=not args.no_causal,
                             trust=args.trust)
    json_path, html_path = report.save(out, command=shlex.join(["rli", *argv]))
    print(report)
    figures = sorted(path.name for path in out.glob("*.png"))
    print(f"\nwrote {html_path}, {json_path} and {len(figures)} figures ({', '.join(figures)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rli`` console script; returns the exit code (0 ok, 1 bad input, 2 usage, 130 interrupted).

    Example:
        >>> main(["--version"])  # doctest: +ELLIPSIS
        rli ...
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from rli.errors import RliError

    try:
        if args.command == "interrogate":
            return _interrogate(args, argv)
        if args.command == "sweep":
            from rli.runs.command import run_sweep_command

            return run_sweep_command(args, argv)
        code = {"layers": _layers, "probe": _probe}[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return code
    except RliError as err:
        print(f"rli: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        # e.g. unpickling a checkpoint (--trust) whose classes live in a module that is not importable here
        why = " (with --trust, unpickling imports the classes the file names)" if getattr(args, "trust", False) else ""
        print(f"rli: error: cannot import module {err.name!r}, which {getattr(args, 'policy', 'this command')} "
              f"needs{why}; install it or add the folder that holds it to PYTHONPATH", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("rli: interrupted", file=sys.stderr)
        return 130


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away


def _quiet_stdout() -> None:
    """The reader of stdout went away (``rli layers ... | head``): stop quietly, as well-behaved CLIs do.

    Python would report the failed flush of the remaining output at exit; pointing stdout
    at /dev/null first (as the Python documentation advises for SIGPIPE) avoids that.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured in a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
