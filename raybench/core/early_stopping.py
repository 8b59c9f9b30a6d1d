"""LoadGen's early-stopping criterion (confidence 0.99, tolerance 0), decided exactly at any count.

Why: MLPerf lets a run stop once the measured latencies prove, at 99 % confidence, that the
target percentile holds. Our VALID/INVALID verdicts and summary lines must equal LoadGen's
(``loadgen/early_stopping.cc`` and ``PerformanceSummary::EarlyStopping`` in ``loadgen/results.cc``)
for every query count LoadGen accepts, from a few hundred to 2**64 - 1.

The criterion. With ``h`` under-latency and ``t`` over-latency queries out of ``n = h + t``, and a
per-query under-latency probability ``P = p - d`` (``Q = 1 - P``), the chance of seeing at most
``t`` over-latency queries is the binomial CDF::

    odds(h, t, p, d) = P(Bin(n, Q) <= t) = sum_{x=0..t} C(n, x) Q^x P^(n-x) = I_P(h, 1 + t)

``find_min_passing(t, p)`` is the least ``h`` with ``odds(h, t, p, d) < 1 - c`` (``c = 0.99``).

* Server: ``t`` = queries with latency ``> target_latency``; the run passes iff
  ``queries_issued >= find_min_passing(t, p) + t``.
* SingleStream / MultiStream: need ``n >= find_min_passing(1, p) + 1`` queries; then ``t``
  is the largest value with ``n >= find_min_passing(t, p) + t`` and the percentile estimate
  is ``sorted_latencies[n - t]`` — the t-th highest latency (index ``n - 1`` is the max when
  ``t = 1``), i.e. the ``t - 1`` highest latencies are discarded.

How LoadGen computes it: ``odds`` in double precision as ``x^a (1-x)^(b-1) / (a B(a, b))`` times the
terminating series 2F1(1, 1-b; 1+a; x/(x-1)) summed until a term drops below 2**-33 (O(sqrt t)
terms); ``find_min_passing`` as a lower-bound binary search on a bracket extrapolated from the
answers cached for smaller ``t`` (a fresh cache per ``EarlyStopping`` call; the seed for
``t = 0`` is ``ceil(log(1-c) / log(p-d))``); SingleStream/MultiStream scan ``t = 2, 3, ...``.

How we compute it. Each question "is ``odds(h, t) < 1 - c``?" is answered *exactly*, i.e. as exact
rational arithmetic on the double values ``p - d`` and ``1 - c`` that LoadGen uses would answer
it, without overflow at any size:

* ``odds`` is ``pmf(t) * S`` with ``S = sum_i prod_{k<i} (t-k) P / ((h+1+k) Q)``. When
  ``t >= n Q`` (at or above the mean) the CDF is at least 1/2 and the answer is "no" at once;
  below the mean every factor is < 1, so the terms fall and nothing overflows.
* ``log pmf(t)`` is computed in 60-80-digit decimal arithmetic (log-gamma by Stirling's series),
  ``S`` in float64 (numpy, up to ~3e5 terms); the comparison is accepted when it clears an error
  margin of ~1e-10 in log space, which it does except within a hair of the threshold.
* Otherwise, and for ``t`` beyond 2e9 with slowly falling terms, everything is redone in decimal
  arithmetic: the series directly, or by Euler-Maclaurin (an integral by 16 x 16-point
  Gauss-Legendre plus endpoint corrections) when it would need millions of terms. Its error is
  below 1e-20, far under the gap between ``odds(h)`` and ``odds(h+1)`` (~1e-13 relative even at
  2**64 queries). Should the decimal value still be within 1e-20 of the threshold (never seen),
  up to 4000 queries the question is settled with exact integers.

Cost: a few milliseconds per question up to ~1e9 queries (0.1-0.8 s per early-stopping call at
1e9), ~0.1 s per question beyond 2e9 over-latency queries (seconds per call at 2**64).

Because the exact ``odds`` falls strictly as ``h`` grows, the least passing ``h`` is unique and
any correct search finds LoadGen's answer, provided LoadGen's own bracket contains it (the tests
check that it does along LoadGen's call sequences). :class:`MinPassingQueriesFinder` is LoadGen's
bracketed search and is what :func:`server_early_stopping` runs, once per call like LoadGen;
:func:`find_min_passing` and the SingleStream/MultiStream ``t`` search start from a normal
(Cornish-Fisher) estimate instead, which needs a handful of evaluations where LoadGen's linear
scan needs ``t`` of them.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

from raybench.core.binomial_tail import (
    CONFIDENCE,
    TOLERANCE,
    _below,
    _Criterion,
    _criterion,
    beta_regularized,
    odds,
    odds_below,
)
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
    "odds_below",
    "server_early_stopping",
]

# ---------------------------------------------------------------- searching h and t
def _lower_bound(lo: int, hi: int, passes) -> int:
    """LoadGen's lower-bound binary search: least h in [lo, hi) passing, else ``hi``."""
    count = hi - lo
    while count > 0:
        step = count // 2
        h = lo + step
        if passes(h):
            count = step
        else:
            lo = h + 1
            count -= step + 1
    return lo


def _gallop(start: int, passes, floor: int) -> int:
    """Least ``h >= floor`` with ``passes(h)`` (monotone), searching outwards from ``start``."""
    start = max(start, floor)
    if passes(start):
        hi, step = start, 1
        while hi - step >= floor and passes(hi - step):
            hi -= step
            step *= 2
        lo = max(hi - step, floor - 1)  # lo fails (or is below the floor)
    else:
        lo, step = start, 1
        while not passes(lo + step):
            lo += step
            step *= 2
        hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _estimate_n(t: int, crit: _Criterion) -> int:
    """Queries ``n`` at which ``t`` over-latency ones sit at the ``1 - c`` quantile (Cornish-Fisher)."""
    p, q = float(crit.P), float(crit.Q)
    skew = (crit.z * crit.z - 1.0) * (p - q) / 6.0
    n = (t + 0.5) / q
    for _ in range(60):
        n = max((t + 0.5 - crit.z * math.sqrt(n * p * q) - skew) / q, float(t + 1))
    return int(n)


def _least_passing(t: int, crit: _Criterion) -> int:
    """The least ``h >= 1`` with ``odds(h, t) < 1 - c`` (exact; estimate-seeded search)."""

    def passes(h: int) -> bool:
        return _below(h, t, crit)

    if t == 0:
        start = max(1, math.ceil(crit.ln_a / crit.ln_p))
    else:
        start = max(1, _estimate_n(t, crit) - t)
    return _gallop(start, passes, 1)


class MinPassingQueriesFinder:
    """LoadGen's ``MinPassingQueriesFinder``: cached answers bracket the binary search for new ``t``.

    The bracket for ``t`` extrapolates from the two nearest cached ``t' < t``: at least
    ``(p-d)/(1-p+d)`` more passing queries per extra over-latency query (``min_h``), at most
    the (over-estimated) slope ``(y1 - y0) * (x1 - x0)`` (``max_h``); with an empty cache
    ``(x0, y0) = (-1, 0)`` and ``(x1, y1) = (0, ceil(log(1-c) / log(p-d)))``. All in Python
    integers and doubles as LoadGen's int64/double arithmetic (no overflow here), and each
    probe is the exact :func:`odds_below`. Should a bracket ever miss the least passing ``h``
    (LoadGen would then return an end of the bracket), the answer is found without it.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[float, float, float], list[int]] = {}
        self._values: dict[tuple[float, float, float], dict[int, int]] = {}
        self.bracket_misses = 0

    def __call__(self, t: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> int:
        if t < 0:
            raise ValueError(f"find_min_passing: t must be >= 0, got {t}")
        crit = _criterion(p, d, c)
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

        def passes(h: int) -> bool:
            return _below(h, t, crit)

        h = _lower_bound(min_h, max_h, passes)
        if not (passes(h) and (h <= 1 or not passes(h - 1))):
            self.bracket_misses += 1
            h = _least_passing(t, crit)
        keys.insert(pos, t)
        cache[t] = h
        return h


@functools.lru_cache(maxsize=4096)
def _find_min_passing(t: int, p: float, d: float, c: float) -> int:
    return _least_passing(t, _criterion(p, d, c))


def find_min_passing(t: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> int:
    """Least ``h`` with ``odds(h, t, p, d) < 1 - c`` (exact, memoised).

    Examples at p = 0.99: ``h + t`` = 459 (t=0), 662 (t=1), 2010 (t=10), 12571 (t=100).
    """
    if t < 0:
        raise ValueError(f"find_min_passing: t must be >= 0, got {t}")
    if not 0.0 < p - d < 1.0:
        raise ValueError(f"find_min_passing: p - d must be in (0, 1), got {p - d}")
    return _find_min_passing(int(t), float(p), float(d), float(c))


def _largest_passing_t(n: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> int:
    """Largest ``t >= 1`` with ``n >= find_min_passing(t, p) + t`` (given that t = 1 passes).

    ``n >= h(t) + t`` holds exactly when ``odds(n - t, t) < 1 - c``, i.e. when ``t`` is below
    the ``1 - c`` quantile of Bin(n, 1 - p): a monotone test in ``t``, searched from the
    Cornish-Fisher estimate of that quantile. (LoadGen scans ``i = 2, 3, ...`` and stops at the
    first ``i`` with ``n < h(i) + i``, taking ``t = i - 1``: the same ``t``, since ``h(t) + t``
    strictly increases with ``t``.)
    """
    crit = _criterion(p, d, c)

    def fails(t: int) -> bool:  # monotone: False ... False True ... True
        return t >= n or not _below(n - t, t, crit)

    q = float(crit.Q)
    sigma = math.sqrt(n * q * float(crit.P))
    guess = n * q + crit.z * sigma + (crit.z**2 - 1) * (float(crit.P) - q) / 6 - 0.5
    start = min(max(int(guess) + 1, 2), n)
    return _gallop(start, fails, 2) - 1


# ---------------------------------------------------------------- results and summary lines
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

    Runs LoadGen's search (:class:`MinPassingQueriesFinder`, fresh per call as in
    ``PerformanceSummary::EarlyStopping``) with exact odds; any count up to 2**64 - 1 works.

    Args:
        queries_issued: ``n``, queries issued in the performance run.
        overlatency_count: ``t``, queries with latency strictly above the target latency.
        p: target latency percentile (0.99 for most Server benchmarks).
    """
    _check_percentile(p)
    queries_issued, t = int(queries_issued), int(overlatency_count)
    if queries_issued < 0 or not 0 <= t <= max(queries_issued, 0):
        raise ValueError(
            f"server_early_stopping: need 0 <= overlatency_count ({t}) <= queries_issued ({queries_issued})"
        )
    required = MinPassingQueriesFinder()(t, p) + t
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
    n = int(stats.count)
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
