"""Argument checks shared by the public functions: one wording for counts, seeds, numbers, flags and arrays at
every boundary. Each returns the checked value (as ``int``, ``float``, ``bool`` or ``np.ndarray``) or raises a
one-line :class:`RliError` naming the argument; ``hint`` (a parenthesis such as ``" (K of the K-fold split)"``)
says what the argument is for."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from rli.errors import RliError
from rli.tensors import to_numpy

MAX_SEED = 2**32 - 1


def count(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``; :class:`RliError` otherwise.

    Example:
        >>> count(3, "episodes")
        3
        >>> count(2.5, "episodes")
        Traceback (most recent call last):
        ...
        rli.errors.RliError: episodes must be a positive integer, got 2.5
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise RliError(f"{name} must be {bound}, got {value!r}{hint}")
    if maximum is not None and value > maximum:
        raise RliError(f"{name} must be at most {maximum}, got {value!r}{hint}")
    return int(value)


def seed(value: Any, name: str = "seed") -> int:
    """``value`` as an ``int`` if it is a usable seed (an integer in 0..2**32 - 1); :class:`RliError` otherwise.

    Example:
        >>> seed(7)
        7
        >>> seed(None)
        Traceback (most recent call last):
        ...
        rli.errors.RliError: seed must be an integer between 0 and 4294967295, got None
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SEED:
        raise RliError(f"{name} must be an integer between 0 and {MAX_SEED}, got {value!r}")
    return int(value)


def real(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
         hint: str = "") -> float:
    """``value`` as a finite ``float`` (optionally within bounds); :class:`RliError` otherwise.

    Example:
        >>> real(0.5, "tolerance", minimum=0.0)
        0.5
        >>> real("0.5", "tolerance")
        Traceback (most recent call last):
        ...
        rli.errors.RliError: tolerance must be a finite number, got '0.5'
    """
    number = None
    if not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating)):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        raise RliError(f"{name} must be a finite number, got {value!r}{hint}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        low = "" if minimum is None else f" ≥ {minimum:g}"
        high = "" if maximum is None else f" ≤ {maximum:g}"
        raise RliError(f"{name} must be a number{low}{' and' if low and high else ''}{high}, got {value!r}{hint}")
    return number


def flag(value: Any, name: str, *, hint: str = "") -> bool:
    """``value`` as a ``bool`` if it is one (numpy's too); :class:`RliError` otherwise (``"no"`` is not False).

    Example:
        >>> flag(True, "controls")
        True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise RliError(f"{name} must be True or False, not {value!r}{hint}")
    return bool(value)


def array(value: Any, name: str, *, what: str = "a numeric array of real numbers", ndim: int | tuple[int, ...] |
          None = None, shape: str = "", dtype: Any = None, finite: bool = True, min_rows: int | None = None,
          fix: str = "drop or fix those values", hint: str = "") -> np.ndarray:
    """``value`` (array, nested list or tensor) as a real-valued numpy array, in the spirit of scikit-learn's
    ``check_array``; :class:`RliError` otherwise. No copy unless ``dtype`` asks for a conversion.

    Checked in order: it converts to a non-ragged array whose dtype is bool, integer or floating (not object,
    string or complex: the message says ``{name} must be {what}``); its number of dimensions is ``ndim`` (an int or
    the allowed ints; ``shape`` describes the expected shape in the message, e.g. ``"(n, d)"``); it has at least
    ``min_rows`` rows; with ``finite``, it has no NaN/inf (the message counts them, names the first row, then says
    ``fix``). ``hint`` ends the dtype and shape messages.

    Example:
        >>> array([[1, 2], [3, 4]], "acts", ndim=2, dtype=np.float64).dtype
        dtype('float64')
        >>> array([[1.0], [float("nan")]], "acts")
        Traceback (most recent call last):
        ...
        rli.errors.RliError: acts: 1 NaN/inf values (first in row 1); drop or fix those values
        >>> array([[1], [1, 2]], "acts")
        Traceback (most recent call last):
        ...
        rli.errors.RliError: acts must be a numeric array of real numbers, not a ragged list
    """
    given = to_numpy(value)
    try:
        arr = np.asarray(given)
    except (TypeError, ValueError):
        raise RliError(f"{name} must be {what}, not a ragged {type(value).__name__}") from None
    if arr.dtype.kind not in "biuf":
        raise RliError(f"{name} must be {what}, got {type(value).__name__} of dtype {arr.dtype}{hint}")
    if ndim is not None and arr.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        expected = shape or " or ".join(f"{k}-dimensional" for k in ((ndim,) if isinstance(ndim, int) else ndim))
        raise RliError(f"{name} must be {expected}; got shape {arr.shape}{hint}")
    if min_rows is not None and (arr.ndim == 0 or arr.shape[0] < min_rows):
        raise RliError(f"{name} needs at least {min_rows} rows, got shape {arr.shape}{hint}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if finite and arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argwhere(bad)[0][0]) if arr.ndim else 0
            raise RliError(f"{name}: {int(bad.sum())} NaN/inf values (first in row {row}); {fix}")
    return arr


def policy(value: Any, name: str = "policy") -> Any:
    """``value`` if it is an :class:`~rli.Policy`; :class:`RliError` saying how to get one otherwise."""
    from rli.policy import Policy

    if not isinstance(value, Policy):
        raise RliError(f"{name} must be an rli.Policy (use rli.load_policy(...)), not {type(value).__name__}")
    return value


def fits_in_memory(nbytes: float, what: str) -> None:
    """:class:`RliError` when ``what`` needs more bytes than the machine's physical memory (checked before allocating:
    a lazily committed allocation would otherwise be filled until the machine swaps or kills the process)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > total:
        raise RliError(f"{what} would take {nbytes / 2**30:.3g} GiB, more than this machine's {total / 2**30:.3g} GiB "
                       "of memory; ask for less")
