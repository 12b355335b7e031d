"""The ``rli`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rli", description="Interpretability assertions for RL policies.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    layers = commands.add_parser("layers", help="print the addressable layers of a policy",
                                 description="Print every addressable layer of a policy: actor-trunk index, "
                                             "aliases, dotted module name, module type and output width.")
    layers.add_argument("policy", help="SB3 .zip, TorchScript/torch .pt, or .safetensors file")
    layers.add_argument("--arch", help="architecture for bare weights, e.g. 'mlp:28,256,256,128,4:elu'")
    layers.add_argument("--trust", action="store_true",
                        help="allow full unpickling (runs code stored in the file); only for files you trust")
    layers.add_argument("--json", action="store_true", help="print the table as JSON")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rli")
    except PackageNotFoundError:
        return "unknown"


def _parse_arch(text: str | None) -> dict | None:
    from rli.errors import RliError

    if text is None:
        return None
    parts = text.split(":")
    if parts[0] != "mlp" or len(parts) not in (2, 3):
        raise RliError(f"--arch must look like 'mlp:28,256,4' or 'mlp:28,256,4:elu', not {text!r}")
    try:
        sizes = [int(size) for size in parts[1].split(",")]
    except ValueError:
        raise RliError(f"--arch sizes must be integers separated by commas, not {parts[1]!r}") from None
    return {"mlp": sizes, "activation": parts[2] if len(parts) == 3 else "tanh"}


def _layers(args: argparse.Namespace) -> int:
    import rli

    policy = rli.load_policy(args.policy, arch=_parse_arch(args.arch), trust=args.trust)
    if args.json:
        print(json.dumps({"policy": repr(policy), "fingerprint": policy.fingerprint,
                          "layers": policy.layers.to_dict()}, indent=2))
    else:
        print(policy)
        print(policy.layers)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rli`` console script; returns the exit code (0 ok, 1 bad input, 2 usage)."""
    args = _parser().parse_args(argv)
    from rli.errors import RliError

    try:
        return {"layers": _layers}[args.command](args)
    except RliError as err:
        print(f"rli: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
