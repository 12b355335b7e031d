"""Find the checkpoints of training runs: a glob, a list of paths, or a run directory → ordered :class:`Checkpoint`\\s.

SB3's ``CheckpointCallback`` names its files ``<prefix>_<N>_steps.zip`` (``rl_model_<N>_steps.zip``
by default) and, with ``save_vecnormalize=True``, saves the observation statistics beside them as
``<prefix>_vecnormalize_<N>_steps.pkl``; both are recognised here (the statistics by
:func:`rli.loading.normalization.vecnormalize_beside`, the rule :func:`rli.load_policy` follows too).
The training seed comes from the checkpoint card (``<stem>.json`` with a ``"seed"``), else from the path (a ``seed_3``,
``seed3`` or ``s3`` directory, or ``seed3`` in the file name).

Example:
    >>> import pathlib, tempfile
    >>> from rli.runs.checkpoints import discover
    >>> run = pathlib.Path(tempfile.mkdtemp()) / "seed_1"
    >>> run.mkdir()
    >>> for n in (2000, 1000):
    ...     _ = (run / f"rl_model_{n}_steps.zip").write_bytes(b"")
    >>> [(c.step, c.seed) for c in discover(str(run / "*.zip"))]
    [(1000, 1), (2000, 1)]
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rli.errors import RliError
from rli.loading.normalization import vecnormalize_beside

_STEPS = re.compile(r"^(?P<prefix>.+)_(?P<step>\d+)_steps$")
_SEED_DIR = re.compile(r"^(?:.*[_-])?(?:seed[_-]?|s)(?P<seed>\d+)$", re.IGNORECASE)
_SEED_NAME = re.compile(r"(?:^|[_-])seed[_-]?(?P<seed>\d+)(?:$|[_-])", re.IGNORECASE)
_SUFFIXES = (".zip", ".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class Checkpoint:
    """One saved policy of a training run.

    ``path`` the file; ``step`` the training step (from ``<prefix>_<N>_steps``, else the card's
    ``"timesteps"``, else None); ``seed`` the training seed (card, else path, else None); ``run``
    the training run it belongs to (its directory); ``vecnormalize`` the observation statistics
    saved with this step (SB3's ``CheckpointCallback`` name, ``<stem>_vecnormalize.pkl``...: found by
    :func:`rli.loading.normalization.vecnormalize_beside`; None when there are none).
    """

    path: str
    step: int | None
    seed: int | None
    run: str
    vecnormalize: str | None = None

    def load(self, *, trust: bool = False, device: str = "cpu") -> Any:
        """The policy, with this step's VecNormalize statistics (read without running code from them)."""
        from rli.loading import load_policy

        normalizer = Path(self.vecnormalize) if self.vecnormalize is not None else None
        return load_policy(self.path, trust=trust, normalizer=normalizer, device=device)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"path": self.path, "step": self.step, "seed": self.seed, "run": self.run,
                "vecnormalize": self.vecnormalize}


def discover(checkpoints: Any) -> list[Checkpoint]:
    """The checkpoints named by a glob string, a directory (every checkpoint under it), a path, or a list of those.

    Globs and directories are ordered by run, then step, then name; a list keeps its order
    (each entry expanded in place); a checkpoint named twice is kept once. An empty glob,
    a missing file or an empty directory is an :class:`~rli.RliError` naming it.
    """
    if isinstance(checkpoints, Checkpoint):
        return [checkpoints]
    if isinstance(checkpoints, (str, Path)):
        entries: Iterable[Any] = [checkpoints]
    elif isinstance(checkpoints, Iterable):
        entries = list(checkpoints)
        if not entries:
            raise RliError("checkpoints is an empty list; give a glob ('runs/*/rl_model_*_steps.zip'), "
                           "a run directory or paths to .zip files")
    else:
        raise RliError(f"checkpoints must be a glob, a directory, a path or a list of them, "
                       f"not {type(checkpoints).__name__}")
    found: list[Checkpoint] = []
    seen: set[str] = set()
    for entry in entries:
        for checkpoint in _expand(entry):
            if checkpoint.path not in seen:
                seen.add(checkpoint.path)
                found.append(checkpoint)
    return found


def _expand(entry: Any) -> list[Checkpoint]:
    if isinstance(entry, Checkpoint):
        return [entry]
    if not isinstance(entry, (str, Path)):
        raise RliError(f"a checkpoint must be a path or a glob string, not {type(entry).__name__} ({entry!r})")
    text = str(entry)
    path = Path(text)
    if glob.has_magic(text):
        paths = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        if not paths:
            raise RliError(f"the checkpoint pattern {text!r} matches no file; check the path "
                           "(quote it in a shell so that rli, not the shell, expands it)")
        return _ordered(paths)
    if path.is_dir():
        paths = [p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file()]
        if not paths:
            raise RliError(f"the run directory {text!r} holds no checkpoint ({', '.join(_SUFFIXES)} files)")
        return _ordered(paths)
    if not path.is_file():
        raise RliError(f"no such checkpoint: {text!r} (give an existing file, a run directory or a glob)")
    return [_checkpoint(path)]


def _ordered(paths: list[Path]) -> list[Checkpoint]:
    found = [_checkpoint(p) for p in paths]
    return sorted(found, key=lambda c: (c.run, c.step is None, c.step or 0, c.path))


def _read_card(path: Path) -> dict[str, Any] | None:
    """The card ``<stem>.json`` beside a checkpoint (as :func:`rli.protocol.read_card`, without importing the
    protocol's plotting and report machinery just to read a seed)."""
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RliError(f"the checkpoint card {card_path} is not valid JSON ({err}); fix or remove it") from None
    return card if isinstance(card, dict) else None


def _checkpoint(path: Path) -> Checkpoint:
    card = _read_card(path) if path.suffix in _SUFFIXES else None
    match = _STEPS.match(path.stem)
    step: int | None = int(match["step"]) if match else None
    beside = vecnormalize_beside(path)
    vecnormalize = str(beside) if beside is not None else None
    if step is None and card is not None and _is_int(card.get("timesteps")):
        step = int(card["timesteps"])
    seed = int(card["seed"]) if card is not None and _is_int(card.get("seed")) else _seed_from_path(path)
    return Checkpoint(path=str(path), step=step, seed=seed, run=str(path.parent), vecnormalize=vecnormalize)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seed_from_path(path: Path) -> int | None:
    name = _SEED_NAME.search(path.stem)
    if name:
        return int(name["seed"])
    for part in reversed(path.parent.parts):
        match = _SEED_DIR.match(part)
        if match:
            return int(match["seed"])
    return None
