"""Progress on stderr: a tqdm bar or a one-line stage display, shown only on a terminal unless asked.

Example:
    >>> with progress_bar(3, "evaluate", unit="ep", progress=False) as b:
    ...     b.update(3)
    >>> shown(False)
    False
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rli import checks


def shown(progress: bool | None) -> bool:
    """Whether to display progress: ``progress`` when it is True or False, else whether stderr is a terminal.

    Example:
        >>> shown(True)
        True
    """
    if progress is None:
        return sys.stderr.isatty()
    return checks.flag(progress, "progress", hint=" (or None: only on a terminal)")


def progress_bar(total: int, desc: str, *, unit: str, progress: bool | None) -> Any:
    """A transient tqdm bar of ``total`` steps on stderr (a context manager with ``.update(n)``); a disabled one,
    whose updates cost nothing, when progress is not :func:`shown`.

    Example:
        >>> progress_bar(10, "rli sweep", unit="unit", progress=False).disable
        True
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not shown(progress), leave=False, file=sys.stderr)


@contextlib.contextmanager
def stage_display(label: str, progress: bool | None) -> Iterator[Callable[[str], None]]:
    """A one-line display ``"{label}: {stage} [elapsed]"`` on stderr; yields the function that names the current
    stage (a no-op when progress is not :func:`shown`). Bars opened inside show beneath it.

    Example:
        >>> with stage_display("rli interrogate", False) as stage:
        ...     stage("probe")
    """
    if not shown(progress):
        yield lambda name: None
        return
    from tqdm.auto import tqdm

    line = tqdm(bar_format=label + ": {desc} [{elapsed} elapsed]", file=sys.stderr, leave=False)
    try:
        yield line.set_description_str
    finally:
        line.close()
