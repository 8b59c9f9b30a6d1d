"""A mergeable HDR-style latency histogram with 3 significant digits.

Shards record every latency (integer nanoseconds) into a :class:`Histogram`; the coordinator
merges them (``merge_all``) and reads percentiles the way LoadGen does, without ever holding
every sample in one place.

Layout (log-linear, fixed, so any two histograms merge by adding count arrays):

* values ``0 .. 2047`` each get their own bucket (exact);
* above that, for every power of two ``[2**(s+10), 2**(s+11))`` with ``s >= 1``, 1024 linear
  sub-buckets of width ``2**s``.

Flattened, a value ``v`` lands in bucket ``(s << 10) + (v >> s)`` with
``s = max(v.bit_length() - 11, 0)``. A bucket of width ``w`` starts at ``>= 1024 * w``, so
reporting its midpoint is off by at most ``w / 2 / (1024 * w) = 1/2048`` (0.049 %) of the
value: three significant digits, as HdrHistogram's ``significant_figures=3`` but with twice
the sub-buckets so the *midpoint* error, not the bucket width, stays under 0.1 %.

Values up to :data:`HIGHEST_TRACKABLE` (``2**51 - 1`` ns, about 26 days) are bucketed;
larger values are clamped into the last bucket (still counted, and still exact in
``min``/``max``/``total``, which are tracked outside the buckets). The dense count array has
:data:`BUCKET_COUNT` = 43,008 int64 slots (344 KiB); it crosses process boundaries in a
sparse form (``to_dict`` and pickling), usually a few hundred non-zero buckets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["BUCKET_COUNT", "HIGHEST_TRACKABLE", "LAYOUT_VERSION", "Histogram", "merge_all"]

SUB_BUCKET_BITS = 11
"""log2 of the sub-bucket count (2048): the number of exact values at the bottom."""
_HALF_BITS = SUB_BUCKET_BITS - 1  # 1024 sub-buckets per power of two above the exact range
MAX_SHIFT = 40
"""Largest bucket width exponent: widths go up to 2**40 ns, values up to 2**51 - 1."""
HIGHEST_TRACKABLE = (1 << (MAX_SHIFT + SUB_BUCKET_BITS)) - 1
BUCKET_COUNT = (MAX_SHIFT << _HALF_BITS) + (1 << SUB_BUCKET_BITS)
LAYOUT_VERSION = "hdr-log-linear-2048-v1"

_SMALL_BATCH = 2048  # below this, np.add.at beats a full-length bincount


def _bucket_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower bound and width of every bucket, as int64 arrays of length BUCKET_COUNT."""
    idx = np.arange(BUCKET_COUNT, dtype=np.int64)
    shift = np.maximum((idx >> _HALF_BITS) - 1, 0)
    sub = idx - (shift << _HALF_BITS)
    return sub << shift, np.left_shift(np.int64(1), shift)


_LOWER, _WIDTH = _bucket_bounds()
_REPRESENTATIVE = _LOWER + (_WIDTH >> 1)
"""Reported value of each bucket: its midpoint (exact for width-1 buckets)."""


def _index_of(value: int) -> int:
    """Bucket index of one non-negative Python int (clamped to the last bucket)."""
    if value > HIGHEST_TRACKABLE:
        value = HIGHEST_TRACKABLE
    shift = value.bit_length() - SUB_BUCKET_BITS
    if shift <= 0:
        return value
    return (shift << _HALF_BITS) + (value >> shift)


def _indices_of(values: np.ndarray) -> np.ndarray:
    """Vectorised :func:`_index_of` for a non-negative int64 array.

    The bit length comes from the IEEE-754 exponent field of the value converted to float64
    (exact, since clamped values are < 2**53): ``bit_length = (bits >> 52) - 1023 + 1``;
    zero has exponent field 0 and lands in shift 0 like any small value.
    """
    v = np.minimum(values, HIGHEST_TRACKABLE)
    exponent_field = v.astype(np.float64).view(np.int64) >> 52
    shift = np.maximum(exponent_field - (1022 + SUB_BUCKET_BITS), 0)
    index: np.ndarray = (shift << _HALF_BITS) + (v >> shift)
    return index


def _exact_sum(values: np.ndarray) -> int:
    """Exact Python-int sum of a non-negative int64 array (no int64 overflow).

    Summing the high and low 32-bit halves separately keeps each partial sum below 2**63 for
    fewer than 2**31 values.
    """
    hi = int(np.sum(values >> 32, dtype=np.int64))
    lo = int(np.sum(values & 0xFFFFFFFF, dtype=np.int64))
    return (hi << 32) + lo


class Histogram:
    """HDR-style log-linear histogram of non-negative integer values (ns), 3 significant digits.

    ``count``, ``min``, ``max`` and ``total`` are exact; order statistics come from the
    buckets (bucket midpoint, within 1/2048 relative) clamped into ``[min, max]``, so the
    smallest and the largest value are reported exactly. Merging adds count arrays, so it is
    exactly associative and commutative.

    Example:
        >>> h = Histogram()
        >>> h.record_many(np.array([1_000_000, 2_000_000, 3_000_000]))
        >>> h.percentile(0.5)   # LoadGen index int(3 * 0.5) = 1 -> ~2 ms
        2000384
        >>> h.max
        3000000
    """

    __slots__ = ("_dense", "_sparse", "_count", "_min", "_max", "_total", "_cum")

    def __init__(self) -> None:
        # Dense counts are created on first need: a histogram received from another process
        # stays in its sparse (index, counts) form, a few KiB, until it is read or recorded into.
        self._dense: np.ndarray | None = None
        self._sparse: tuple[np.ndarray, np.ndarray] | None = None
        self._count = 0
        self._min: int | None = None
        self._max: int | None = None
        self._total = 0
        self._cum: tuple[np.ndarray, np.ndarray] | None = None  # cached cumulative counts, reset on change

    @property
    def _counts(self) -> np.ndarray:
        """The dense bucket counts (materialised from the sparse form on first use)."""
        if self._dense is None:
            self._dense = np.zeros(BUCKET_COUNT, dtype=np.int64)
            if self._sparse is not None:
                np.add.at(self._dense, self._sparse[0], self._sparse[1])
                self._sparse = None
        return self._dense

    def _nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-zero bucket indices and their counts, without materialising the dense form."""
        if self._dense is None:
            if self._sparse is None:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            return self._sparse
        nz = np.flatnonzero(self._dense)
        return nz, self._dense[nz]

    # ------------------------------------------------------------------ recording
    def record(self, value: int, count: int = 1) -> None:
        """Record ``value`` (ns) ``count`` times.

        Raises:
            ValueError: if ``value`` or ``count`` is negative.
        """
        value = int(value)
        count = int(count)
        if value < 0:
            raise ValueError(f"Histogram.record: value must be >= 0, got {value}")
        if count <= 0:
            if count == 0:
                return
            raise ValueError(f"Histogram.record: count must be >= 0, got {count}")
        self._counts[_index_of(value)] += count
        self._count += count
        self._total += value * count
        if self._min is None or value < self._min:
            self._min = value
        if self._max is None or value > self._max:
            self._max = value
        self._cum = None

    def record_many(self, values: np.ndarray) -> None:
        """Record every element of an integer array (vectorised; no per-value Python work).

        Raises:
            ValueError: if the array is not integer-typed or holds a negative value.
        """
        arr = np.asarray(values)
        if arr.size == 0:
            return
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"Histogram.record_many: values must be integers, got dtype {arr.dtype}")
        arr = arr.ravel()
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"Histogram.record_many: values must be >= 0, got {lo}")
        if hi > np.iinfo(np.int64).max:
            raise ValueError(f"Histogram.record_many: value {hi} does not fit in int64")
        arr = arr.astype(np.int64, copy=False)
        idx = _indices_of(arr)
        if arr.size < _SMALL_BATCH:
            np.add.at(self._counts, idx, 1)
        else:
            dense = self._counts
            dense += np.bincount(idx, minlength=BUCKET_COUNT)
        self._count += int(arr.size)
        self._total += _exact_sum(arr)
        self._min = lo if self._min is None else min(self._min, lo)
        self._max = hi if self._max is None else max(self._max, hi)
        self._cum = None

    # ------------------------------------------------------------------ exact summaries
    @property
    def count(self) -> int:
        """Number of recorded values (exact)."""
        return self._count

    @property
    def min(self) -> int:
        """Smallest recorded value (exact); 0 for an empty histogram."""
        return 0 if self._min is None else self._min

    @property
    def max(self) -> int:
        """Largest recorded value (exact); 0 for an empty histogram."""
        return 0 if self._max is None else self._max

    @property
    def total(self) -> int:
        """Exact sum of recorded values (Python int, never overflows)."""
        return self._total

    @property
    def mean(self) -> float:
        """``total / count`` (exact sum, one float division); 0.0 when empty."""
        return self._total / self._count if self._count else 0.0

    # ------------------------------------------------------------------ order statistics
    def _cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty bucket indices and the running count up to each (sparse: no dense array)."""
        if self._cum is None:
            idx, counts = self._nonzero()
            self._cum = (idx, np.cumsum(counts))
        return self._cum

    def value_at_index(self, i: int) -> int:
        """The ``i``-th smallest recorded value (0-based, as ``sorted(values)[i]``).

        ``i == 0`` and ``i == count - 1`` return the exact min and max; any other index
        returns its bucket's midpoint clamped into ``[min, max]`` (within 1/2048 relative).

        Raises:
            IndexError: if ``i`` is outside ``[0, count)``.
        """
        if not 0 <= i < self._count:
            raise IndexError(f"Histogram.value_at_index: index {i} outside [0, {self._count})")
        if i == 0:
            return self.min
        if i == self._count - 1:
            return self.max
        idx, cum = self._cumulative()
        bucket = int(idx[int(np.searchsorted(cum, i, side="right"))])
        return min(max(int(_REPRESENTATIVE[bucket]), self.min), self.max)

    def percentile(self, p: float) -> int:
        """LoadGen's percentile: ``value_at_index(min(int(count * p), count - 1))``, p in [0, 1].

        LoadGen indexes the sorted latencies at ``count * p`` (truncated, no interpolation).

        Raises:
            ValueError: if ``p`` is outside [0, 1].
            IndexError: if the histogram is empty.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Histogram.percentile: p must be in [0, 1], got {p}")
        return self.value_at_index(min(int(self._count * p), self._count - 1))

    def count_above(self, threshold: int) -> int:
        """Number of recorded values reported above ``threshold``.

        Consistent with :meth:`value_at_index`: equals ``#{i : value_at_index(i) > threshold}``
        (exact min and max, clamped bucket midpoints in between). Exact when
        ``threshold >= max`` (0) or ``threshold < min`` (all). Otherwise only values sharing
        ``threshold``'s bucket can be misclassified: all of them count as above or none does,
        depending on the bucket midpoint (bucket width <= threshold/1024).
        """
        if self._count == 0 or threshold >= self.max:
            return 0
        if threshold < self.min:
            return self._count
        # Here min <= threshold < max (so count >= 2). Values whose bucket midpoint is above:
        first = int(np.searchsorted(_REPRESENTATIVE, threshold, side="right"))
        idx, cum = self._cumulative()
        k = int(np.searchsorted(idx, first, side="left"))  # non-empty buckets below ``first``
        above = self._count - (int(cum[k - 1]) if k > 0 else 0)
        # ...but the smallest value reports as min (<= threshold, not above) and the largest
        # as max (> threshold, above), whatever their buckets' midpoints say.
        above -= int(_REPRESENTATIVE[_index_of(self.min)] > threshold)
        above += int(_REPRESENTATIVE[_index_of(self.max)] <= threshold)
        return above

    def cdf_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted bucket values (clamped into [min, max]) and cumulative fractions, for plots.

        Returns:
            ``(values_ns, fractions)``: int64 and float64 arrays, one point per non-empty
            bucket; ``fractions[-1] == 1.0``. Empty arrays for an empty histogram.
        """
        nz, counts = self._nonzero()
        if nz.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        values = np.clip(_REPRESENTATIVE[nz], self.min, self.max)
        fractions = np.cumsum(counts) / self._count
        return values, fractions

    # ------------------------------------------------------------------ merging
    def merge_into(self, other: Histogram) -> None:
        """Add ``other``'s values into this histogram (in place)."""
        if not isinstance(other, Histogram):
            raise TypeError(f"Histogram.merge_into: expected Histogram, got {type(other).__name__}")
        if other._count == 0:
            return
        if other._dense is not None:
            dense = self._counts
            dense += other._dense
        else:
            idx, counts = other._nonzero()
            np.add.at(self._counts, idx, counts)
        self._count += other._count
        self._total += other._total
        self._min = other._min if self._min is None else min(self._min, other.min)
        self._max = other._max if self._max is None else max(self._max, other.max)
        self._cum = None

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding the values of both (associative and commutative, exactly)."""
        out = self.copy()
        out.merge_into(other)
        return out

    def copy(self) -> Histogram:
        """An independent copy."""
        out = Histogram.__new__(Histogram)
        out._dense = None if self._dense is None else self._dense.copy()
        out._sparse = self._sparse
        out._count, out._min, out._max, out._total = self._count, self._min, self._max, self._total
        out._cum = None
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable sparse form: non-zero bucket indices and counts plus exact stats."""
        nz, counts = self._nonzero()
        return {
            "layout": LAYOUT_VERSION,
            "count": self._count,
            "min": self._min,
            "max": self._max,
            "total": self._total,
            "index": nz.tolist(),
            "counts": counts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        """Rebuild a histogram from :meth:`to_dict` output.

        Raises:
            ValueError: naming the offending field if the dict is malformed or inconsistent.
        """
        if not isinstance(d, dict):
            raise ValueError(f"Histogram.from_dict: expected a dict, got {type(d).__name__}")
        missing = [k for k in ("layout", "count", "min", "max", "total", "index", "counts") if k not in d]
        if missing:
            raise ValueError(f"Histogram.from_dict: missing field(s) {missing}")
        if d["layout"] != LAYOUT_VERSION:
            raise ValueError(
                f"Histogram.from_dict: field 'layout' is {d['layout']!r}, expected {LAYOUT_VERSION!r}"
            )
        index = np.asarray(d["index"], dtype=np.int64)
        counts = np.asarray(d["counts"], dtype=np.int64)
        if index.shape != counts.shape or index.ndim != 1:
            raise ValueError("Histogram.from_dict: fields 'index' and 'counts' must be equal-length lists")
        if index.size and (index.min() < 0 or index.max() >= BUCKET_COUNT):
            raise ValueError(f"Histogram.from_dict: field 'index' has a bucket outside [0, {BUCKET_COUNT})")
        if index.size and counts.min() < 0:
            raise ValueError("Histogram.from_dict: field 'counts' has a negative count")
        if int(counts.sum()) != d["count"]:
            raise ValueError(
                f"Histogram.from_dict: field 'count' is {d['count']}, buckets sum to {int(counts.sum())}"
            )
        if (d["count"] == 0) != (d["min"] is None) or (d["min"] is None) != (d["max"] is None):
            raise ValueError("Histogram.from_dict: fields 'min'/'max' must be null exactly when 'count' is 0")
        out = cls()
        if index.size:
            order = np.argsort(index, kind="stable")
            idx, first = np.unique(index[order], return_index=True)
            out._sparse = (idx, np.add.reduceat(counts[order], first))
        out._count = int(d["count"])
        out._min = None if d["min"] is None else int(d["min"])
        out._max = None if d["max"] is None else int(d["max"])
        out._total = int(d["total"])
        return out

    def __getstate__(self) -> tuple[Any, ...]:
        # The dense array is 344 KiB; the sparse form is usually a few KiB.
        idx, counts = self._nonzero()
        return (LAYOUT_VERSION, self._count, self._min, self._max, self._total, idx, counts)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):  # an older pickle
            other = Histogram.from_dict(state)
            for name in self.__slots__:
                setattr(self, name, getattr(other, name))
            return
        layout, self._count, self._min, self._max, self._total, idx, counts = state
        if layout != LAYOUT_VERSION:
            raise ValueError(f"Histogram: pickled layout {layout!r}, expected {LAYOUT_VERSION!r}")
        self._dense, self._sparse, self._cum = None, (idx, counts) if idx.size else None, None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self._count == other._count
            and self._min == other._min
            and self._max == other._max
            and self._total == other._total
            and all(bool(np.array_equal(a, b)) for a, b in zip(self._nonzero(), other._nonzero(), strict=True))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Histogram(count={self._count}, min={self.min}, max={self.max}, mean={self.mean:.1f})"


def merge_all(hists: Iterable[Histogram]) -> Histogram:
    """Merge any number of histograms into a new one (order does not matter).

    Sums the dense count arrays in place into one accumulator: 64 histograms take about a
    millisecond.
    """
    out = Histogram()
    for h in hists:
        out.merge_into(h)
    return out
