"""Exact order statistics, and the ``LatencyStats`` protocol shared with :class:`Histogram`.

Percentiles follow LoadGen (``loadgen/results.cc``): sort the latencies once and index at
``int(count * p)`` — no interpolation — clamped to the last element so ``p = 1`` is the max.
:class:`ExactStats` does this on the raw array (single-process runs, tests, cross-checks);
:class:`raybench.core.histogram.Histogram` answers the same questions within 0.1 % from
mergeable buckets. Early stopping and the summary writers accept either.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["PERCENTILE_GRID", "ExactStats", "LatencyStats"]

PERCENTILE_GRID: tuple[float, ...] = (0.50, 0.90, 0.95, 0.97, 0.99, 0.999)
"""The percentiles LoadGen reports in its summary and detail logs."""


@runtime_checkable
class LatencyStats(Protocol):
    """Order statistics over a set of non-negative integer latencies (ns)."""

    @property
    def count(self) -> int:
        """Number of values."""
        ...

    @property
    def min(self) -> int:
        """Smallest value (0 when empty)."""
        ...

    @property
    def max(self) -> int:
        """Largest value (0 when empty)."""
        ...

    @property
    def mean(self) -> float:
        """Arithmetic mean (0.0 when empty)."""
        ...

    @property
    def total(self) -> int:
        """Exact sum."""
        ...

    def value_at_index(self, i: int) -> int:
        """``sorted(values)[i]`` for ``0 <= i < count``."""
        ...

    def percentile(self, p: float) -> int:
        """``value_at_index(min(int(count * p), count - 1))`` for p in [0, 1]."""
        ...

    def count_above(self, threshold: int) -> int:
        """Number of values ``> threshold``."""
        ...


class ExactStats:
    """Exact :class:`LatencyStats` over an integer array, sorted once at construction.

    Example:
        >>> s = ExactStats(np.array([30, 10, 20, 40]))
        >>> s.percentile(0.5), s.count_above(20), s.value_at_index(3)
        (30, 2, 40)
    """

    __slots__ = ("_sorted", "_total")

    def __init__(self, values: np.ndarray) -> None:
        arr = np.asarray(values)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ExactStats: values must be integers, got dtype {arr.dtype}")
        self._sorted = np.sort(arr.astype(np.int64, copy=False).ravel())
        if self._sorted.size and self._sorted[0] < 0:
            raise ValueError(f"ExactStats: values must be >= 0, got {int(self._sorted[0])}")
        # Exact Python-int sum without int64 overflow: high and low 32-bit halves separately.
        hi = int(np.sum(self._sorted >> 32, dtype=np.int64))
        lo = int(np.sum(self._sorted & 0xFFFFFFFF, dtype=np.int64))
        self._total = (hi << 32) + lo

    @property
    def values(self) -> np.ndarray:
        """The sorted values (read-only view)."""
        view = self._sorted.view()
        view.flags.writeable = False
        return view

    @property
    def count(self) -> int:
        """Number of values."""
        return int(self._sorted.size)

    @property
    def min(self) -> int:
        """Smallest value; 0 when empty."""
        return int(self._sorted[0]) if self._sorted.size else 0

    @property
    def max(self) -> int:
        """Largest value; 0 when empty."""
        return int(self._sorted[-1]) if self._sorted.size else 0

    @property
    def total(self) -> int:
        """Exact sum (Python int)."""
        return self._total

    @property
    def mean(self) -> float:
        """``total / count``; 0.0 when empty."""
        return self._total / self._sorted.size if self._sorted.size else 0.0

    def value_at_index(self, i: int) -> int:
        """``sorted(values)[i]``.

        Raises:
            IndexError: if ``i`` is outside ``[0, count)``.
        """
        if not 0 <= i < self._sorted.size:
            raise IndexError(f"ExactStats.value_at_index: index {i} outside [0, {self._sorted.size})")
        return int(self._sorted[i])

    def percentile(self, p: float) -> int:
        """LoadGen's percentile: ``sorted[min(int(count * p), count - 1)]``.

        Raises:
            ValueError: if ``p`` is outside [0, 1].
            IndexError: if there are no values.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ExactStats.percentile: p must be in [0, 1], got {p}")
        n = int(self._sorted.size)
        return self.value_at_index(min(int(n * p), n - 1))

    def count_above(self, threshold: int) -> int:
        """Number of values strictly greater than ``threshold`` (exact)."""
        return int(self._sorted.size - np.searchsorted(self._sorted, threshold, side="right"))

    def __repr__(self) -> str:
        return f"ExactStats(count={self.count}, min={self.min}, max={self.max}, mean={self.mean:.1f})"
