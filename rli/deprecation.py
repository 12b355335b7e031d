"""Renamed arguments and attributes: the old name keeps working for one release, with a ``DeprecationWarning``.

:func:`renamed_arguments` is the one place that logic lives: every public function
whose argument was renamed (``w`` → ``direction`` in :func:`rli.reflect`, ``indices`` →
``sensors`` in :func:`rli.negate_sensors`, ...) is wrapped by it. :func:`warn_deprecated` issues the warning itself
(for renamed attributes, e.g. ``ProbeResult.r2`` on a logistic probe), attributed to the
user's line. The table of renames is in ``docs/migration.md``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from rli.errors import RliError

_F = TypeVar("_F", bound=Callable[..., Any])


def warn_deprecated(message: str, *, stacklevel: int = 2) -> None:
    """Issue ``message`` as a :class:`DeprecationWarning`, attributed ``stacklevel`` frames up (2: the caller's caller).

    Example:
        >>> import warnings
        >>> from rli.deprecation import warn_deprecated
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_deprecated("x is renamed y")
        >>> caught[0].category.__name__, str(caught[0].message)
        ('DeprecationWarning', 'x is renamed y')
    """
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)


def renamed_arguments(**old_to_new: str) -> Callable[[_F], _F]:
    """Decorator: keyword ``old=`` still works as ``new=`` for one release, with a :class:`DeprecationWarning`.

    The warning names the function, the old and the new name, and points at the
    caller's line. Giving both names (the new one by keyword or by position) is an
    :class:`~rli.RliError`, raised before the function runs. Positional calls and
    calls with the new names are untouched (no warning, no extra work beyond one
    dictionary lookup per renamed argument). On a class's ``__init__`` the warning
    names the class. The wrapper keeps the mapping as ``__rli_renamed__`` (old → new),
    from which the tests check that every rename is documented and tested.

    Example:
        >>> import warnings
        >>> from rli.deprecation import renamed_arguments
        >>> @renamed_arguments(size="width")
        ... def box(name, width):
        ...     return name, width
        >>> box("a", width=3)
        ('a', 3)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     box("a", size=3)
        ('a', 3)
        >>> str(caught[0].message)
        'box(): the argument size= is renamed width=; size= will stop working in the next release'
    """

    def decorate(func: _F) -> _F:
        params = inspect.signature(func).parameters
        missing = [new for new in old_to_new.values() if new not in params]
        if missing or any(old in params for old in old_to_new):
            raise TypeError(f"renamed_arguments({old_to_new}) does not fit {func.__qualname__}{inspect.signature(func)}")
        positional = [name for name, p in params.items()
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        position = {new: positional.index(new) if new in positional else None for new in old_to_new.values()}
        name = func.__qualname__.removesuffix(".__init__")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                where = position[new]
                if new in kwargs or (where is not None and len(args) > where):
                    raise RliError(f"{name}() got both {old}= (its old name) and {new}=; pass {new}= only")
                warn_deprecated(f"{name}(): the argument {old}= is renamed {new}=; {old}= will stop working in "
                                "the next release", stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        wrapper.__dict__["__rli_renamed__"] = dict(old_to_new)
        return cast(_F, wrapper)  # functools.wraps keeps the signature; the type is the function's

    return decorate
