"""The one exception type rli raises on bad input."""

from __future__ import annotations


class RliError(ValueError):
    """Bad input to rli: the message says what was wrong and what to do.

    It subclasses :class:`ValueError`, so code that already catches ``ValueError``
    keeps working.

    Example:
        >>> import rli
        >>> try:
        ...     rli.ObsSet([[0.0, float("nan")]])
        ... except rli.RliError as err:
        ...     print("rejected")
        rejected
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and "\n" in args[0]:
            args = (" ".join(args[0].split()),)  # one line, even when it quotes a multi-line repr (an array)
        super().__init__(*args)
