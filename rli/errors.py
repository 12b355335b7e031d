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
