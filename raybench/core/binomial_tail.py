"""The binomial tail behind LoadGen's early stopping, decided exactly without overflow.

``odds(h, t, p, d) = P(Bin(h + t, 1 - (p - d)) <= t)``; :func:`odds_below` answers "is it below
``1 - c``?" as exact rational arithmetic on LoadGen's double constants would (see
:mod:`raybench.core.early_stopping` for the method and its error bounds).
"""

from __future__ import annotations

import decimal
import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from statistics import NormalDist

import numpy as np

__all__ = ["CONFIDENCE", "TOLERANCE", "beta_regularized", "odds", "odds_below"]

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
