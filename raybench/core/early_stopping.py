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
import decimal
import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from statistics import NormalDist

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
    "odds_below",
    "server_early_stopping",
]

CONFIDENCE = 0.99
"""LoadGen's hard-coded confidence ``c``."""
TOLERANCE = 0.0
"""LoadGen's hard-coded tolerance ``d``."""

_FLOAT_MAX_T = 2_000_000_000  # beyond this (and slowly falling terms) the float series is too long
_FAST_DECAY = 0.99  # first series factor below this: the terms fall at least geometrically
_EM_MIN_T = 20_000  # Euler-Maclaurin only for long, slowly falling series
_EXACT_MAX_N = 4000  # exact-integer last resort up to this many queries
_GL_NODES = 16
_EM_PANELS = 16
_EM_DEPTH = 64.0  # integrate until the terms fell by e^-64 (~1.6e-28)

# B_2 .. B_30
_BERNOULLI = tuple(
    Fraction(v)
    for v in (
        "1/6", "-1/30", "1/42", "-1/30", "5/66", "-691/2730", "7/6", "-3617/510", "43867/798",
        "-174611/330", "854513/138", "-236364091/2730", "8553103/6", "-23749461029/870",
        "8615841276005/14322",
    )
)  # fmt: skip
_PI = Decimal(
    "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534211706798214808651"
)


# ---------------------------------------------------------------- the criterion, exactly
@dataclass(frozen=True)
class _Criterion:
    """``odds < 1 - c`` with ``P = p - d`` and ``1 - c`` as the exact values of LoadGen's doubles."""

    P: Fraction
    Q: Fraction
    A: Fraction
    rho: float  # P / Q
    ln_a: float
    ln_p: float
    z: float  # standard normal quantile of A (negative)


@functools.lru_cache(maxsize=64)
def _criterion(p: float, d: float, c: float) -> _Criterion:
    x = p - d  # in double, as LoadGen
    if not 0.0 < x < 1.0:
        raise ValueError(f"early stopping: p - d must be in (0, 1), got {x}")
    a = 1.0 - c  # in double, as LoadGen's `prob < 1 - c`
    if not 0.0 < a < 0.5:
        raise ValueError(f"early stopping: confidence must be in (0.5, 1), got {c}")
    P = Fraction(x)
    Q = 1 - P
    return _Criterion(P, Q, Fraction(a), float(P / Q), math.log(a), math.log(x), NormalDist().inv_cdf(a))


def _prec(n: int) -> int:
    """Decimal digits: enough for 40+ correct digits after log-gamma cancellation at size ``n``."""
    return 48 + len(str(max(n, 1)))


@functools.lru_cache(maxsize=256)
def _dec_consts(crit: _Criterion, prec: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """``ln P, ln Q, ln A, ln(2 pi) / 2`` to ``prec`` digits."""
    with decimal.localcontext(decimal.Context(prec=prec)):

        def ln(f: Fraction) -> Decimal:
            return (Decimal(f.numerator) / Decimal(f.denominator)).ln()

        return ln(crit.P), ln(crit.Q), ln(crit.A), (2 * _PI).ln() / 2


def _lgamma(z: Decimal, half_ln_2pi: Decimal) -> Decimal:
    """``ln Gamma(z)`` for real ``z > 0`` in the current decimal context (Stirling's series)."""
    eps = Decimal(10) ** (-decimal.getcontext().prec - 2)
    shift = Decimal(1)
    while z < 40:
        shift *= z
        z += 1
    s = (z - Decimal("0.5")) * z.ln() - z + half_ln_2pi
    z2 = z * z
    zp = z
    for k, b in enumerate(_BERNOULLI, start=1):
        term = Decimal(b.numerator) / (Decimal(b.denominator * 2 * k * (2 * k - 1)) * zp)
        s += term
        if abs(term) < eps * abs(s):
            break
        zp *= z2
    return s - shift.ln() if shift != 1 else s


def _log_pmf_dec(h: int, t: int, crit: _Criterion, prec: int) -> Decimal:
    """``ln P(Bin(h + t, Q) = t)`` to about ``prec - len(n)`` digits."""
    ln_p, ln_q, _, c = _dec_consts(crit, prec)
    with decimal.localcontext(decimal.Context(prec=prec)):
        n = h + t
        return (
            _lgamma(Decimal(n + 1), c)
            - _lgamma(Decimal(t + 1), c)
            - _lgamma(Decimal(h + 1), c)
            + t * ln_q
            + h * ln_p
        )


def _first_factor(h: int, t: int, crit: _Criterion) -> Fraction:
    """``pmf(t-1) / pmf(t) = t P / ((h+1) Q)``; < 1 whenever ``t`` is below the mean."""
    return Fraction(t) * crit.P / (Fraction(h + 1) * crit.Q)


def _series_float(h: int, t: int, rho: float) -> tuple[float, int]:
    """``S = sum_{i=0..t} prod_{k<i} (t-k) rho / (h+1+k)`` in float64 (terms falling from 1).

    Returns ``(S, number of terms)``; stops when the geometric bound on the rest (the factors
    fall with ``k``) is below 1e-18 of the sum.
    """
    total, term, k0, size = 1.0, 1.0, 0, 256
    tf, hf = float(t), float(h)
    while k0 < t:
        k = np.arange(k0, min(k0 + size, t), dtype=np.float64)
        f = ((tf - k) * rho) / (hf + 1.0 + k)
        terms = term * np.multiply.accumulate(f)
        total += float(terms.sum())
        term, last_f = float(terms[-1]), float(f[-1])
        k0 += k.size
        if last_f < 1.0 and term * last_f / (1.0 - last_f) <= 1e-18 * total:
            break
        size = min(size * 2, 1 << 16)
    return total, k0 + 1


def _series_dec(h: int, t: int, crit: _Criterion, prec: int) -> Decimal:
    """``S`` term by term in decimal arithmetic (for quickly falling terms)."""
    pn, pd, qn, qd = crit.P.numerator, crit.P.denominator, crit.Q.numerator, crit.Q.denominator
    with decimal.localcontext(decimal.Context(prec=prec)):
        eps = Decimal(10) ** (-prec + 3)
        total, term = Decimal(1), Decimal(1)
        for k in range(t):
            f = Decimal((t - k) * pn * qd) / Decimal((h + 1 + k) * qn * pd)
            term *= f
            total += term
            if f < 1 and term * f / (1 - f) <= eps * total:
                break
        return total


@functools.lru_cache(maxsize=8)
def _gauss_legendre(prec: int) -> tuple[tuple[Decimal, Decimal], ...]:
    """``(node, weight)`` pairs of the 16-point Gauss-Legendre rule on [-1, 1], to ``prec`` digits."""
    out = []
    with decimal.localcontext(decimal.Context(prec=prec + 5)):
        for x0 in np.polynomial.legendre.leggauss(_GL_NODES)[0]:
            x = Decimal(float(x0))
            for _ in range(8):
                p0, p1 = Decimal(1), x
                for k in range(1, _GL_NODES):
                    p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
                dp = _GL_NODES * (x * p1 - p0) / (x * x - 1)
                x -= p1 / dp
            p0, p1 = Decimal(1), x
            for k in range(1, _GL_NODES):
                p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
            dp = _GL_NODES * (x * p1 - p0) / (x * x - 1)
            out.append((+x, +(2 / ((1 - x * x) * dp * dp))))
    return tuple(out)


def _polygamma(m: int, z: Decimal) -> Decimal:
    """``psi^(m)(z)`` for large ``z`` (asymptotic series; ``z`` >= 1e4 here)."""
    eps = Decimal(10) ** (-decimal.getcontext().prec - 2)
    if m == 0:
        s = z.ln() - 1 / (2 * z)
        zp = z * z
        for k, b in enumerate(_BERNOULLI, start=1):
            term = Decimal(b.numerator) / (Decimal(b.denominator * 2 * k) * zp)
            s -= term
            if abs(term) < eps * abs(s):
                break
            zp *= z * z
        return s
    s = Decimal(math.factorial(m - 1)) / z**m + Decimal(math.factorial(m)) / (2 * z ** (m + 1))
    zp = z ** (m + 2)
    for k, b in enumerate(_BERNOULLI, start=1):
        coef = Fraction(math.factorial(2 * k + m - 1), math.factorial(2 * k)) * b
        term = Decimal(coef.numerator) / (Decimal(coef.denominator) * zp)
        s += term
        if abs(term) < eps * abs(s):
            break
        zp *= z * z
    return s if m % 2 == 1 else -s


def _series_em(h: int, t: int, crit: _Criterion, prec: int) -> Decimal | None:
    """``S`` by Euler-Maclaurin for long, slowly falling series; ``None`` if that does not apply.

    With ``G(x) = ln Gamma(t+1) - ln Gamma(t-x+1) + ln Gamma(h+1) - ln Gamma(h+x+1) + x ln(P/Q)``
    (so ``exp G(i)`` is the i-th term), ``S = int_0^X exp G + 1/2 - sum_k B_2k / (2k)! g^(2k-1)(0)``
    where ``X`` is where ``G`` fell below -64; the derivatives at 0 come from polygamma series.
    """
    ln_p, ln_q, _, c = _dec_consts(crit, prec)
    with decimal.localcontext(decimal.Context(prec=prec)):
        ln_rho = ln_p - ln_q
        c0 = _lgamma(Decimal(t + 1), c) + _lgamma(Decimal(h + 1), c)

        def big_g(x: Decimal) -> Decimal:
            return c0 - _lgamma(t - x + 1, c) - _lgamma(h + x + 1, c) + x * ln_rho

        zt, zh = Decimal(t + 1), Decimal(h + 1)
        derivs = [ln_rho + _polygamma(0, zt) - _polygamma(0, zh)]  # G'(0), G''(0), ...
        for j in range(2, 13):
            sign = 1 if j % 2 == 1 else -1
            derivs.append(sign * _polygamma(j - 1, zt) - _polygamma(j - 1, zh))
        a, b = derivs[0], derivs[1]
        if a >= 0 or b >= 0:
            return None
        depth = Decimal(_EM_DEPTH)
        x_end = 2 * depth / (-a + (a * a - 2 * b * depth).sqrt())
        while big_g(x_end) > -(depth - 4):
            x_end *= Decimal("1.5")
        if x_end >= t - 1:
            return None
        # panel ends where the quadratic model of G has dropped by equal steps
        ends = [Decimal(0)]
        for j in range(1, _EM_PANELS + 1):
            drop = depth * j / _EM_PANELS
            ends.append(min(2 * drop / (-a + (a * a - 2 * b * drop).sqrt()), x_end))
        ends[-1] = x_end
        integral = Decimal(0)
        for lo, hi in zip(ends, ends[1:], strict=False):
            half, mid = (hi - lo) / 2, (hi + lo) / 2
            if half <= 0:
                continue
            integral += half * sum(w * big_g(mid + half * x).exp() for x, w in _gauss_legendre(prec))
        # derivatives of g = exp(G) at 0: g^(m+1) = sum_j C(m, j) G^(j+1) g^(m-j)
        g = [Decimal(1)]
        for m in range(11):
            g.append(sum(math.comb(m, j) * derivs[j] * g[m - j] for j in range(m + 1)))
        total = integral + Decimal("0.5")
        for k in range(1, 7):
            b2k = _BERNOULLI[k - 1]
            total -= Decimal(b2k.numerator) / Decimal(b2k.denominator * math.factorial(2 * k)) * g[2 * k - 1]
        return total


def _exact_below(h: int, t: int, crit: _Criterion) -> bool:
    """``P(Bin(h + t, Q) <= t) < A`` in exact integer arithmetic (small ``n`` only)."""
    n = h + t
    P, Q, A = crit.P, crit.Q, crit.A
    den = math.lcm(P.denominator, Q.denominator)
    pn, qn = P.numerator * (den // P.denominator), Q.numerator * (den // Q.denominator)
    num = sum(math.comb(n, x) * qn**x * pn ** (n - x) for x in range(t + 1))
    return num * A.denominator < A.numerator * den**n


def _log_odds_dec(h: int, t: int, crit: _Criterion) -> Decimal:
    """``ln odds`` in decimal arithmetic (``1 <= t < n Q``)."""
    n = h + t
    prec = _prec(n)
    s = None
    if t > _EM_MIN_T and _first_factor(h, t, crit) >= _FAST_DECAY:
        s = _series_em(h, t, crit, prec)
    if s is None:
        s = _series_dec(h, t, crit, prec)
    with decimal.localcontext(decimal.Context(prec=prec)):
        return _log_pmf_dec(h, t, crit, prec) + s.ln()


def _below(h: int, t: int, crit: _Criterion) -> bool:
    """Exact answer to ``odds(h, t) < 1 - c`` (see the module docstring)."""
    if h <= 0:
        return False  # odds = P(Bin(t, Q) <= t) = 1
    n = h + t
    if t == 0:  # odds = P^h
        log_odds = h * crit.ln_p
        if abs(log_odds - crit.ln_a) > 1e-12 * (1.0 + abs(log_odds)):
            return log_odds < crit.ln_a
        ln_p, _, ln_a, _ = _dec_consts(crit, _prec(n))
        with decimal.localcontext(decimal.Context(prec=_prec(n))):
            diff = h * ln_p - ln_a
        if abs(diff) > Decimal(10) ** -30 or n > _EXACT_MAX_N:
            return diff < 0
        return _exact_below(h, t, crit)
    if t * crit.Q.denominator >= n * crit.Q.numerator:
        return False  # t at or above the mean n Q: the CDF is at least 1/2 > 1 - c
    if t <= _FLOAT_MAX_T or _first_factor(h, t, crit) < _FAST_DECAY:
        s, terms = _series_float(h, t, crit.rho)
        log_odds = float(_log_pmf_dec(h, t, crit, _prec(n))) + math.log(s)
        margin = 1e-11 + 2e-15 * terms
        if abs(log_odds - crit.ln_a) > margin:
            return log_odds < crit.ln_a
    diff = _log_odds_dec(h, t, crit) - _dec_consts(crit, _prec(n))[2]
    if abs(diff) > Decimal(10) ** -20 or n > _EXACT_MAX_N:
        return diff < 0
    return _exact_below(h, t, crit)


def odds_below(h: int, t: int, p: float, d: float = TOLERANCE, c: float = CONFIDENCE) -> bool:
    """Whether ``odds(h, t, p, d) < 1 - c``, decided exactly (LoadGen's test in ``find_min_passing``)."""
    if t < 0:
        raise ValueError(f"early stopping: t must be >= 0, got {t}")
    return _below(int(h), int(t), _criterion(p, d, c))


def odds(h: int, t: int, p: float, d: float = TOLERANCE) -> float:
    """P(at most ``t`` over-latency queries among ``h + t``) = ``I_{p-d}(h, 1 + t)`` (float)."""
    h, t = int(h), int(t)
    if h <= 0:
        return 1.0
    x = p - d
    if not 0.0 < x < 1.0:
        raise ValueError(f"early stopping: p - d must be in (0, 1), got {x}")
    crit = _Criterion(Fraction(x), 1 - Fraction(x), Fraction(1, 100), x / (1 - x), 0.0, math.log(x), 0.0)
    n = h + t
    if t == 0:
        return math.exp(h * crit.ln_p)
    if t * crit.Q.denominator < n * crit.Q.numerator:
        return float(_log_odds_dec(h, t, crit).exp())
    # at or above the mean: 1 - P(Bin(n, Q) >= t + 1), the upper tail summed upwards
    if t >= n:
        return 1.0
    prec = _prec(n)
    pn, pd, qn, qd = crit.P.numerator, crit.P.denominator, crit.Q.numerator, crit.Q.denominator
    with decimal.localcontext(decimal.Context(prec=prec)):
        first = _log_pmf_dec(n - t - 1, t + 1, crit, prec).exp()
        total, term, eps = Decimal(1), Decimal(1), Decimal(10) ** (-prec + 3)
        for k in range(n - t - 1):
            f = Decimal((n - t - 1 - k) * qn * pd) / Decimal((t + 2 + k) * pn * qd)
            term *= f
            total += term
            if f < 1 and term * f / (1 - f) <= eps * total:
                break
        return float(1 - first * total)


def beta_regularized(x: float, a: int, b: int) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` for integers ``a >= 1``, ``b >= 1``.

    ``I_x(a, b) = P(Bin(a + b - 1, 1 - x) <= b - 1)``, i.e. ``odds(a, b - 1, x)``.
    """
    if a < 1 or b < 1:
        raise ValueError(f"beta_regularized: need a, b >= 1, got {a}, {b}")
    return odds(a, b - 1, x)


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
