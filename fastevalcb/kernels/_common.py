"""Shared helpers for the kernel wrappers: array coercion and class-id range checks.

The wrappers in this package call these to turn whatever the caller passed into the exact
dtype/contiguity the ``@njit`` kernels were compiled for, and to raise errors that state
what was expected and what was received.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit


def as_array(
    x: npt.ArrayLike, name: str, dtype: npt.DTypeLike, shape: tuple[int | None, ...]
) -> np.ndarray:
    """Coerce ``x`` to a C-contiguous array of ``dtype`` and check its shape.

    Args:
        x: array-like input.
        name: argument name used in error messages.
        dtype: target numpy dtype.
        shape: expected shape; ``None`` entries match any size, e.g. ``(None, 4)``.

    Returns:
        C-contiguous ``np.ndarray`` of ``dtype`` (no copy when already conforming).

    Raises:
        ValueError: if the number of dimensions or a fixed dimension does not match.
    """
    arr = np.asarray(x)
    if arr.ndim != len(shape) or any(
        want is not None and got != want for want, got in zip(shape, arr.shape)
    ):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape)
        expected += ",)" if len(shape) == 1 else ")"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_same_length(n: int, **arrays: np.ndarray) -> None:
    """Raise ValueError unless every array's first dimension equals ``n``."""
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(f"{name} must have length {n}, got {arr.shape[0]}")


@njit(cache=True, nogil=True)
def _first_out_of_range(ids: np.ndarray, low: int, high: int, ignore: int) -> int:
    """Index of the first element of flat int ``ids`` outside ``[low, high)``, or -1.

    Elements equal to ``ignore`` are skipped.
    """
    for i in range(ids.size):
        v = ids[i]
        if v != ignore and (v < low or v >= high):
            return i
    return -1


def check_class_ids(
    ids: np.ndarray, num_classes: int | None, name: str, ignore: int = -(2**62)
) -> None:
    """Raise ValueError naming the first class id outside ``[0, num_classes)``.

    Args:
        ids: integer array of any shape.
        num_classes: exclusive upper bound; ``None`` checks only for negative ids.
        name: argument name used in the message.
        ignore: a value that is allowed anywhere (e.g. an ``ignore_index`` of 255).
    """
    if ids.size == 0:
        return
    high = np.iinfo(np.int64).max if num_classes is None else int(num_classes)
    flat = np.ascontiguousarray(ids).reshape(-1)
    if flat.min() >= 0 and flat.max() < high:  # the usual case, in two vectorized passes
        return
    i = _first_out_of_range(flat, 0, high, ignore)
    if i >= 0:
        valid = "0 or more" if num_classes is None else f"in [0, {num_classes})"
        raise ValueError(
            f"{name} contains unknown class id {int(flat[i])} at flat index {i}; "
            f"class ids must be {valid}"
        )
