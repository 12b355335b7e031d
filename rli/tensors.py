"""Tensors to numpy at the boundary: one conversion, so every result rli hands back is a numpy array on the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

if TYPE_CHECKING:
    import torch

_T = TypeVar("_T")


@overload
def to_numpy(value: torch.Tensor) -> np.ndarray: ...


@overload
def to_numpy(value: _T) -> _T: ...


def to_numpy(value: Any) -> Any:
    """A tensor as a numpy array (detached, on the CPU; a CPU tensor's memory is shared, not copied); anything
    else unchanged, so a caller's own ``np.asarray`` and its error message still decide what a list or None is.

    Example:
        >>> import torch
        >>> to_numpy(torch.ones(2, requires_grad=True)).tolist()
        [1.0, 1.0]
        >>> to_numpy([1, 2])
        [1, 2]
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value
