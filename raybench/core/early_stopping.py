"""LoadGen's early-stopping criterion (confidence 0.99, tolerance 0), reimplemented in Python.

Why: MLPerf lets a run stop once the measured latencies prove, at 99 % confidence, that the
target percentile holds. The numbers below must equal LoadGen's (``loadgen/early_stopping.cc``
and ``PerformanceSummary::EarlyStopping`` in ``loadgen/results.cc``) so our VALID/INVALID
verdicts and summary lines match the reference.

Math. With ``h`` under-latency and ``t`` over-latency queries out of ``h + t``, and a true
per-query under-latency probability ``p - d``, the chance of seeing at most ``t`` over-latency
queries is the binomial CDF::

    odds(h, t, p, d) = sum_{x=0..t} C(h+t, x) (p-d)^(h+t-x) (1-p+d)^x
                     = I_{p-d}(h, 1 + t)                      (regularized incomplete beta)

``find_min_passing(t, p)`` is the least ``h`` with ``odds(h, t, p, d) < 1 - c``: seeing only
``t`` bad queries among ``h + t`` would then be too unlikely were the percentile violated.

* Server: ``t`` = queries with latency ``> target_latency``; the run passes iff
  ``queries_issued >= find_min_passing(t, p) + t``.
* SingleStream / MultiStream: need ``n >= find_min_passing(1, p) + 1`` queries; then ``t``
  is the largest value with ``n >= find_min_passing(t, p) + t`` and the percentile estimate
  is ``sorted_latencies[n - t]`` — the t-th highest latency (index ``n - 1`` is the max when
  ``t = 1``), i.e. the ``t - 1`` highest latencies are discarded.

No scipy at runtime: ``I_x(a, b)`` for integer ``b`` is evaluated as LoadGen does, through
the terminating hypergeometric series 2F1(1, 1-b; 1+a; x/(x-1)) (DLMF 15.8.1), with the same
operation order (sequential products and sums) and stopping tolerance 2**-33.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from raybench.core.stats import LatencyStats

__all__ = [
    "CONFIDENCE",
    "TOLERANCE",
    "EarlyStoppingResult",
    "MinPassingQueriesFinder",
    "beta_regularized",
    "find_min_passing",
    "latency_early_stopping",
    "odds",
    "server_early_stopping",
]

CONFIDENCE = 0.99
"""LoadGen's hard-coded confidence ``c``."""
TOLERANCE = 0.0
"""LoadGen's hard-coded tolerance ``d``."""
_SERIES_TOLERANCE = 1.0 / (1 << 33)
_FIRST_CHUNK = 512


def _lbeta(x: int, y: int) -> float:
    """log B(x, y) via lgamma, as LoadGen's ``lbeta``."""
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def _hypergeometric_2f1_a1(b: int, c: int, x: float) -> float:
    """2F1(1, b; c; x) = sum_i prod_{k<i} (b+k) x / (c+k), summed until a term is <= 2**-33.

    LoadGen adds the terms one by one; ``np.multiply.accumulate``/``np.add.accumulate`` are
    sequential too, so this gives the same floating-point result, a chunk at a time. For
    ``b <= 0`` the series ends by itself at ``k = -b`` (the factor becomes 0).
    """
    term = 1.0
    result = 1.0
    start = 0
    size = _FIRST_CHUNK
    while True:
        k = np.arange(start, start + size, dtype=np.int64)
        factors = ((b + k) * x) / (c + k).astype(np.float64)
        terms = np.multiply.accumulate(np.concatenate(([term], factors)))[1:]
        done = np.flatnonzero(np.abs(terms) <= _SERIES_TOLERANCE)
        if done.size:
            terms = terms[: done[0] + 1]
        result = float(np.add.accumulate(np.concatenate(([result], terms)))[-1])
        term = float(terms[-1])
        if done.size:
            return result
        start += size
        size *= 2


def beta_regularized(x: float, a: int, b: int) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` for integers ``a >= 1``, ``b >= 1``.

    ``I_x(a, b) = x^a (1-x)^(b-1) / (a B(a, b)) * 2F1(1, 1-b; 1+a; x/(x-1))`` (DLMF 15.8.1
    applied to the 2F1 form of the incomplete beta); the series terminates since ``1-b <= 0``.
    """
    prefactor = math.exp(a * math.log(x) + (b - 1) * math.log(1 - x) - _lbeta(a, b)) / a
    return prefactor * _hypergeometric_2f1_a1(1 - b, 1 + a, x / (x - 1))


def odds(h: int, t: int, p: float, d: float = TOLERANCE) -> float:
    """P(at most ``t`` over-latency queries among ``h + t``) = ``I_{p-d}(h, 1 + t)``."""
    return beta_regularized(p - d, h, 1 + t)


def _search(min_h: int, max_h: int, t: int, p: float, d: float, c: float) -> int:
    """LoadGen's lower-bound binary search for the least h in [min_h, max_h] passing."""
    count = max_h - min_h
    while count > 0:
        step = count // 2
        h = min_h + step
        if odds(h, t, p, d) < 1 - c:
            count = step
        else:
            min_h = h + 1
            count -= step + 1
    return min_h


class MinPassingQueriesFinder:
    """Memoised ``find_min_passing``, bracketing each search from earlier answers as LoadGen.

    The bracket for ``t`` extrapolates from the two nearest cached ``t' < t``: at least
    ``(p-d)/(1-p+d)`` more passing queries per extra over-latency query (``min_h``), at most
    the (over-estimated) slope ``(y1 - y0) * (x1 - x0)`` (``max_h``). The seed for an empty
    cache is ``ceil(log(1-c) / log(p-d))``, the answer for ``t = 0``.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[float, float, float], list[int]] = {}
        self._values: dict[tuple[float, float, float], dict[int, int]] = {}

    def __call__(self, t: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> int:
        if t < 0:
            raise ValueError(f"find_min_passing: t must be >= 0, got {t}")
        if not 0.0 < p - d < 1.0:
            raise ValueError(f"find_min_passing: p - d must be in (0, 1), got {p - d}")
        keys = self._keys.setdefault((p, d, c), [])
        cache = self._values.setdefault((p, d, c), {})
        if t in cache:
            return cache[t]
        pos = bisect.bisect_left(keys, t)
        x0, y0 = -1, 0
        x1, y1 = 0, math.ceil(math.log(1 - c) / math.log(p - d))
        if pos > 0:
            x1 = keys[pos - 1]
            y1 = cache[x1]
        if pos > 1:
            x0 = keys[pos - 2]
            y0 = cache[x0]
        min_slope = (p - d) / (1 - p + d)
        max_slope = float((y1 - y0) * (x1 - x0))
        min_h = int((t - x1) * min_slope + y1)
        max_h = int((t - x1) * max_slope + y1 + 1)
        h = _search(min_h, max_h, t, p, d, c)
        keys.insert(pos, t)
        cache[t] = h
        return h


_FINDER = MinPassingQueriesFinder()


def find_min_passing(t: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> int:
    """Least ``h`` with ``odds(h, t, p, d) < 1 - c`` (process-wide memo).

    Examples at p = 0.99: ``h + t`` = 459 (t=0), 662 (t=1), 2010 (t=10), 12571 (t=100).
    """
    return _FINDER(t, p, d, c)


def _percent_label(p: float) -> str:
    """LoadGen's ``DoubleToString(p * 100, 1)``: fixed, one decimal ("90.0", "99.9").

    LoadGen 6.0 (``mlcommons-loadgen`` 6.0.17) prints one decimal; releases before ~4.1
    printed none ("90th").
    """
    return f"{p * 100:.1f}"


@dataclass(frozen=True, slots=True)
class EarlyStoppingResult:
    """Outcome of LoadGen's early-stopping check, with the summary lines it prints.

    Attributes:
        met: early stopping satisfied.
        percentile: target percentile ``p`` in (0, 1).
        estimate_ns: SingleStream/MultiStream percentile estimate; ``None`` for Server or when
            too few queries were processed.
        overlatency_count: Server: queries over the latency bound (``t``). SingleStream /
            MultiStream: the rank ``t`` of the estimate from the top (``t - 1`` discarded);
            0 when not met.
        queries_issued: ``n``.
        min_queries_required: Server: ``find_min_passing(t, p) + t``; SingleStream /
            MultiStream: the floor ``find_min_passing(1, p) + 1``.
        queries_needed: ``max(0, min_queries_required - n)``; 0 when met.
        lines: the lines LoadGen prints under "Early Stopping Result:" in
            ``mlperf_log_summary.txt``.
        multistream_estimate_ns: SingleStream only (``multistream_percentile`` given):
            LoadGen's ``early_stopping_latency_ms``, the p99 estimate used to infer
            MultiStream; ``None`` otherwise or when too few queries.
    """

    met: bool
    percentile: float
    estimate_ns: int | None
    overlatency_count: int
    queries_issued: int
    min_queries_required: int
    queries_needed: int
    lines: tuple[str, ...]
    multistream_estimate_ns: int | None = None

    @property
    def text(self) -> str:
        """The lines joined with newlines (one summary entry, as LoadGen logs it)."""
        return "\n".join(self.lines)


def _check_percentile(p: float) -> None:
    if not 0.0 < p < 1.0:
        raise ValueError(f"early stopping: percentile must be in (0, 1), got {p}")


def server_early_stopping(queries_issued: int, overlatency_count: int, p: float) -> EarlyStoppingResult:
    """Server early stopping: pass iff ``queries_issued >= find_min_passing(t, p) + t``.

    Args:
        queries_issued: ``n``, queries issued in the performance run.
        overlatency_count: ``t``, queries with latency strictly above the target latency.
        p: target latency percentile (0.99 for most Server benchmarks).
    """
    _check_percentile(p)
    if queries_issued < 0 or not 0 <= overlatency_count <= max(queries_issued, 0):
        raise ValueError(
            f"server_early_stopping: need 0 <= overlatency_count ({overlatency_count}) "
            f"<= queries_issued ({queries_issued})"
        )
    t = overlatency_count
    required = find_min_passing(t, p) + t
    if queries_issued >= required:
        lines: tuple[str, ...] = (" * Run successful.",)
        return EarlyStoppingResult(True, p, None, t, queries_issued, required, 0, lines)
    needed = required - queries_issued
    lines = (
        " * Run unsuccessful.",
        f" * Processed {queries_issued} queries.",
        f" * Would need to run at least {needed} more queries,",
        " with the run being successful if every additional",
        " query were under latency.",
    )
    return EarlyStoppingResult(False, p, None, t, queries_issued, required, needed, lines)


def _largest_passing_t(n: int, p: float) -> int:
    """Largest ``t >= 1`` with ``n >= find_min_passing(t, p) + t`` (given that t = 1 passes).

    LoadGen scans ``i = 2, 3, ...`` and stops at the first ``i`` with ``n < h(i) + i``,
    taking ``t = i - 1``. ``h(t) + t`` is strictly increasing in ``t`` (one more over-latency
    query never needs fewer passing ones), so a galloping binary search finds the same ``t``
    with O(log t) evaluations instead of O(t).
    """

    def passes(t: int) -> bool:
        return n >= find_min_passing(t, p) + t

    lo, step = 1, 1  # invariant: passes(lo)
    while lo + step <= n and passes(lo + step):
        lo += step
        step *= 2
    hi = min(lo + step, n + 1)  # fails (or beyond n, which always fails)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def latency_early_stopping(
    stats: LatencyStats, p: float, multistream_percentile: float | None = None
) -> EarlyStoppingResult:
    """SingleStream/MultiStream early stopping: the percentile estimate LoadGen reports.

    ``stats`` holds the per-query latencies (SingleStream: sample latencies; MultiStream:
    query latencies) and ``n = stats.count`` is the number of queries issued. Needs
    ``n >= find_min_passing(1, p) + 1`` (p90: 64, p99: 662); then with ``t`` the largest value
    such that ``n >= find_min_passing(t, p) + t``, the estimate is
    ``stats.value_at_index(n - t)``: LoadGen indexes the ascending latencies at
    ``queries_issued - t``, so ``t = 1`` gives index ``n - 1``, the maximum, and the
    ``t - 1`` highest latencies are discarded.

    Args:
        stats: latencies, exact (:class:`ExactStats`) or histogram (estimate within 0.1 %).
        p: target percentile (SingleStream 0.90, MultiStream 0.99).
        multistream_percentile: SingleStream only: LoadGen also estimates this percentile
            (hard-coded 0.99) to infer MultiStream; pass 0.99 to reproduce its extra lines.
    """
    _check_percentile(p)
    n = stats.count
    floor = find_min_passing(1, p) + 1
    if n < floor:
        lines = (
            f" * Only processed {n} queries.",
            f" * Need to process at least {floor} queries for early stopping.",
        )
        return EarlyStoppingResult(False, p, None, 0, n, floor, floor - n, lines)
    t = _largest_passing_t(n, p)
    estimate = stats.value_at_index(n - t)
    lines_list = [
        f" * Processed at least {floor} queries ({n}).",
        f" * Would discard {t - 1} highest latency queries.",
        f" * Early stopping {_percent_label(p)}th percentile estimate: {estimate}",
    ]
    ms_estimate: int | None = None
    if multistream_percentile is not None:
        _check_percentile(multistream_percentile)
        ms_floor = find_min_passing(1, multistream_percentile) + 1
        label = _percent_label(multistream_percentile)
        if n < ms_floor:
            lines_list += [
                f" * Not enough queries processed for {label}th percentile",
                " early stopping estimate (would need to process at",
                f" least {ms_floor} total queries).",
            ]
        else:
            ms_estimate = stats.value_at_index(n - _largest_passing_t(n, multistream_percentile))
            lines_list.append(f" * Early stopping {label}th percentile estimate: {ms_estimate}")
    return EarlyStoppingResult(True, p, estimate, t, n, floor, 0, tuple(lines_list), ms_estimate)
