"""MLPerf Endpoints math: token latencies, concurrency-sweep regions, Pareto step function, report.

Everything here is pure (numpy only) and follows the MLPerf Endpoints rules
(``mlcommons/endpoints_policies`` ``endpoints_rules.md`` sections 4-5) and the reference client's
report schema (``mlcommons/endpoints`` ``metrics/report.py``):

- TPOT is LoadGen's ``(latency - ttft) // (n_tokens - 1)`` (:func:`raybench.core.tokens.tpot_ns`,
  the one definition metrics, sweeps and reports share).
- A Pareto *point* is one fixed-concurrency run: ``system_tps = output_tokens / elapsed_s`` and
  ``tps_per_user = 1000 / tpot_p90_ms`` ("interactivity").
- The official curve is a step function through the non-dominated points, never interpolated.
- A sweep needs >= 7 and <= 32 points: one in the ultra-low region (concurrency 1-32) and one in
  each of three log2-spaced regions between ``C_min`` and ``C_max``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PERCENTILES",
    "MAX_POINTS",
    "MIN_POINTS",
    "ParetoPoint",
    "Region",
    "build_result_summary",
    "compute_regions",
    "pareto_frontier",
    "region_of",
    "select_sweep_points",
    "series_block",
    "step_function",
    "step_value",
    "validate_sweep_points",
]

MIN_POINTS = 7
"""Minimum points per Pareto submission: 1 ultra-low + 3 mandatory regions + 3 free choices."""
MAX_POINTS = 32
"""Maximum points per Pareto submission (rules 5.6)."""
ULTRA_LOW_MAX = 32
"""The ultra-low concurrency region is 1..32, fixed for every submission."""
DEFAULT_PERCENTILES: tuple[float, ...] = (99.9, 99.0, 97.0, 95.0, 90.0, 80.0, 75.0, 50.0, 25.0, 10.0, 5.0, 1.0)
"""The percentile grid of the Endpoints report (``result_summary.json`` keys are ``str(p)``)."""


# -- sweep regions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Region:
    """An inclusive concurrency range ``start..end`` (``end < start`` means the region is empty)."""

    name: str
    start: int
    end: int

    def __contains__(self, c: object) -> bool:
        return isinstance(c, int) and self.start <= c <= self.end


def compute_regions(c_min: int, c_max: int) -> dict[str, Region]:
    """The Endpoints regions of interest for a sweep from ``c_min`` to ``c_max``.

    ``I = log2(c_max - c_min) / 3``; low = ``c_min+1 .. round(c_min + 2^I)``, medium = next ..
    ``round(c_min + 2^(2I))``, high = next .. ``c_max``, with Python's banker's rounding (as the
    reference algorithm); ``margin`` = ``c_max+1 .. ceil(1.1 c_max)`` may hold late-added points.

    Raises:
        ValueError: unless ``1 <= c_min <= 32 < c_max``.

    Example:
        >>> r = compute_regions(1, 256)
        >>> [(r[k].start, r[k].end) for k in ("low", "medium", "high")]
        [(2, 7), (8, 41), (42, 256)]
    """
    if not (isinstance(c_min, int) and isinstance(c_max, int)):
        raise ValueError(f"c_min/c_max must be integers, got {c_min!r}, {c_max!r}")
    if not 1 <= c_min <= ULTRA_LOW_MAX:
        raise ValueError(f"c_min: must be in 1..{ULTRA_LOW_MAX}, got {c_min}")
    if c_max <= ULTRA_LOW_MAX:
        raise ValueError(f"c_max: must be > {ULTRA_LOW_MAX}, got {c_max}")
    i = math.log2(c_max - c_min) / 3
    low_end = round(c_min + 2**i)
    med_end = round(c_min + 2 ** (2 * i))
    return {
        "ultra_low": Region("ultra_low", 1, c_min),
        "low": Region("low", c_min + 1, low_end),
        "medium": Region("medium", low_end + 1, med_end),
        "high": Region("high", med_end + 1, c_max),
        "margin": Region("margin", c_max + 1, math.ceil(1.10 * c_max)),
    }


def region_of(c: int, regions: Mapping[str, Region]) -> str | None:
    """Name of the concurrency region holding ``c`` (the ultra-low point ``c_min`` is
    ``"ultra_low"``), or ``None`` when ``c`` lies beyond the margin."""
    for name in ("ultra_low", "low", "medium", "high", "margin"):
        if c in regions[name]:
            return name
    return None


def select_sweep_points(c_min: int, c_max: int, n_points: int = MIN_POINTS) -> list[int]:
    """A default set of ``n_points`` concurrencies satisfying the Endpoints point rules.

    ``c_min`` is the ultra-low point. The other ``n_points - 1`` are shared between the low,
    medium and high regions (equal shares, the remainder going to high, then medium, where
    behaviour changes most), and placed log-evenly inside each region, always including the
    region's upper end: ``round(start * (end / start) ** (j / m))`` for ``j = 1..m``. A region too
    narrow for its share gets all its integers and passes the rest on (high first). Points that
    rounding makes equal are merged, so a narrow sweep may come back a point or two short.

    Raises:
        ValueError: on invalid bounds or ``n_points`` outside 7..32.

    Example:
        >>> select_sweep_points(1, 256)
        [1, 4, 7, 18, 41, 104, 256]
    """
    if not MIN_POINTS <= n_points <= MAX_POINTS:
        raise ValueError(f"n_points: must be in {MIN_POINTS}..{MAX_POINTS}, got {n_points}")
    regions = compute_regions(c_min, c_max)
    names = ("low", "medium", "high")
    cap = {n: max(0, regions[n].end - regions[n].start + 1) for n in names}
    k = n_points - 1
    share = {n: min(k // 3, cap[n]) for n in names}
    left = k - sum(share.values())
    while left > 0:  # the remainder, and what narrow regions cannot hold: high first
        progressed = False
        for n in ("high", "medium", "low"):
            if left > 0 and share[n] < cap[n]:
                share[n] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    points = {c_min}
    for n in names:
        r, m = regions[n], share[n]
        if m >= cap[n]:
            points.update(range(r.start, r.end + 1))
            continue
        for j in range(1, m + 1):
            c = round(r.start * (r.end / r.start) ** (j / m))
            points.add(min(max(c, r.start), r.end))
    return sorted(points)


def validate_sweep_points(points: Sequence[int], c_max: int) -> list[str]:
    """Problems with a set of sweep points under the Endpoints rules (empty list = valid).

    ``c_min`` is the smallest point. Checked: 7..32 distinct points, ``1 <= c_min <= 32 < c_max``,
    at least one point in each of low/medium/high, none beyond the 10 % margin.
    """
    pts = sorted(set(int(p) for p in points))
    problems: list[str] = []
    if len(pts) != len(points):
        problems.append("duplicate concurrency values")
    if not MIN_POINTS <= len(pts) <= MAX_POINTS:
        problems.append(f"need {MIN_POINTS}..{MAX_POINTS} points, got {len(pts)}")
    if not pts:
        return problems
    try:
        regions = compute_regions(pts[0], c_max)
    except ValueError as exc:
        return problems + [str(exc)]
    seen = {region_of(p, regions) for p in pts}
    for name in ("low", "medium", "high"):
        r = regions[name]
        if name not in seen and r.end >= r.start:
            problems.append(f"no point in the {name} region {r.start}..{r.end}")
    beyond = [p for p in pts if region_of(p, regions) is None]
    if beyond:
        problems.append(f"points beyond the margin {regions['margin'].end}: {beyond}")
    return problems


# -- Pareto ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """One fixed-concurrency run on the Endpoints chart.

    Attributes:
        concurrency: target requests in flight.
        system_tps: output tokens per second over the run (y axis).
        tps_per_user: ``1000 / tpot_p90_ms`` (x axis, "interactivity").
        ttft_p90_ms: 90th percentile TTFT (secondary chart), NaN if unknown.
    """

    concurrency: int
    system_tps: float
    tps_per_user: float
    ttft_p90_ms: float = float("nan")


def pareto_frontier(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The non-dominated points, sorted by ``tps_per_user`` ascending (so ``system_tps`` descends).

    A point is dominated when another is at least as good on both axes and better on one; of
    exact ties the lowest concurrency is kept.
    """
    ordered = sorted(points, key=lambda p: (-p.tps_per_user, -p.system_tps, p.concurrency))
    front: list[ParetoPoint] = []
    best_tps = -math.inf
    for p in ordered:  # from the most interactive down, keep points that raise throughput
        if p.system_tps > best_tps:
            front.append(p)
            best_tps = p.system_tps
    return front[::-1]


def step_function(points: Sequence[ParetoPoint]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the official step curve (x = tps_per_user, y = system_tps), for plotting.

    Through the frontier ``(x1, y1) .. (xn, yn)`` (x ascending, y descending), the curve holds
    each measured value until the next measured point, with no interpolation:
    ``S(x) = y1`` on ``[0, x1]`` and ``S(x) = yk`` on ``(x(k-1), xk]``; it ends at ``xn`` (nothing
    was measured as more interactive). Vertices: ``(0, y1), (x1, y1), (x1, y2), (x2, y2), ...,
    (xn, yn)``.
    """
    front = pareto_frontier(points)
    if not front:
        return np.zeros(0), np.zeros(0)
    xs = [0.0, front[0].tps_per_user]
    ys = [front[0].system_tps, front[0].system_tps]
    for prev, p in zip(front, front[1:], strict=False):
        xs += [prev.tps_per_user, p.tps_per_user]
        ys += [p.system_tps, p.system_tps]
    return np.asarray(xs), np.asarray(ys)


def step_value(points: Sequence[ParetoPoint], tps_per_user: float) -> float | None:
    """``S(x)``: the best system TPS *measured* at an interactivity of at least ``x``.

    ``None`` beyond the most interactive measured point (no verified performance there).
    """
    best = None
    for p in points:
        if p.tps_per_user >= tps_per_user and (best is None or p.system_tps > best):
            best = p.system_tps
    return best


# -- result_summary.json -----------------------------------------------------------------------


def series_block(
    values: Any,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    n_buckets: int = 30,
    early_stopping: Callable[[np.ndarray, float], float | None] | None = None,
    es_percentiles: Sequence[float] = (99.0, 90.0),
) -> dict[str, Any]:
    """One metric block of ``result_summary.json`` (ttft/tpot/latency/ISL/OSL); ``{}`` if empty.

    Fields: ``total, min, max, median, avg, std_dev`` (sample, ``n - 1``), ``percentiles``
    (``{str(p): value}``, observed values via numpy ``method="lower"``), ``histogram``
    (``{"buckets": [[lo, hi], ...], "counts": [...]}``, ``n_buckets`` log-spaced over
    ``[max(min, 1), max]``), and ``early_stopping_percentiles`` (``{str(p): estimate | None}``)
    when an ``early_stopping(sorted_values, fraction)`` estimator is given.
    """
    arr = np.asarray(values)
    arr = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    if arr.size == 0:
        return {}
    arr = np.sort(arr)
    ints = arr.dtype.kind in "iu"
    pv = np.percentile(arr, list(percentiles), method="lower")
    num = lambda v: int(v) if ints else float(v)  # noqa: E731
    lo = max(float(arr[0]), 1.0)
    hi = max(float(arr[-1]), lo * 10.0)
    edges = np.exp(np.linspace(math.log(lo), math.log(hi), n_buckets + 1))
    counts, _ = np.histogram(np.clip(arr, edges[0], edges[-1]), bins=edges)
    n = arr.size
    block: dict[str, Any] = {
        "total": num(arr.sum()),
        "min": num(arr[0]),
        "max": num(arr[-1]),
        "median": float(np.percentile(arr, 50, method="lower")),
        "avg": float(arr.mean()),
        "std_dev": float(arr.std(ddof=1)) if n > 1 else 0.0,
        "percentiles": {str(float(p)): float(v) for p, v in zip(percentiles, pv, strict=False)},
        "histogram": {
            "buckets": [[float(a), float(b)] for a, b in zip(edges[:-1], edges[1:], strict=False)],
            "counts": [int(c) for c in counts],
        },
    }
    if early_stopping is not None:
        block["early_stopping_percentiles"] = {
            str(float(p)): early_stopping(arr, p / 100.0) for p in es_percentiles
        }
    return block


def build_result_summary(
    *,
    ttft_ns: Any,
    tpot_ns: Any,
    latency_ns: Any,
    output_tokens: Any,
    input_tokens: Any = (),
    n_samples_issued: int,
    n_samples_failed: int = 0,
    duration_ns: int | None,
    legacy_loadgen_window_ns: int | None = None,
    finish_reasons: Mapping[str, int] | None = None,
    run_config: Mapping[str, Any] | None = None,
    accuracy: Sequence[Mapping[str, Any]] = (),
    version: str = "raybench",
    git_sha: str | None = None,
    test_started_at: int = 0,
    state: str = "complete",
    early_stopping: Callable[[np.ndarray, float], float | None] | None = None,
) -> dict[str, Any]:
    """A ``result_summary.json`` dict in the MLPerf Endpoints ``Report`` schema.

    ``n_samples_completed`` = number of latency values. Throughput: with a LoadGen-style window
    (Poisson runs; first issue to completion of the last-issued query) and >= 2 completions,
    ``qps = (completed - 1) / window_s`` and ``tps = output_tokens_total / window_s``; otherwise
    ``qps = completed / duration_s`` and ``tps = output_tokens_total / duration_s``. The window
    actually used is recorded (``legacy_loadgen_window_duration_ns`` is ``None`` when not).
    """
    latency = np.asarray(latency_ns)
    osl = np.asarray(output_tokens, dtype=np.int64)
    completed = int(latency.size)
    tokens_total = int(osl.sum()) if osl.size else 0
    use_window = legacy_loadgen_window_ns is not None and legacy_loadgen_window_ns > 0 and completed >= 2
    qps: float | None
    tps: float | None
    if use_window:
        w = legacy_loadgen_window_ns / 1e9  # type: ignore[operator]
        qps, tps = (completed - 1) / w, (tokens_total / w if osl.size else None)
    elif duration_ns:
        d = duration_ns / 1e9
        qps, tps = completed / d, (tokens_total / d if osl.size else None)
    else:
        qps = tps = None
    es = early_stopping
    return {
        "version": version,
        "git_sha": git_sha,
        "test_started_at": int(test_started_at),
        "n_samples_issued": int(n_samples_issued),
        "n_samples_completed": completed,
        "n_samples_failed": int(n_samples_failed),
        "duration_ns": int(duration_ns) if duration_ns else None,
        "state": state,
        "complete": state == "complete",
        "ttft": series_block(ttft_ns, early_stopping=es),
        "tpot": series_block(tpot_ns, early_stopping=es),
        "latency": series_block(latency_ns, early_stopping=es),
        "input_sequence_lengths": series_block(np.asarray(input_tokens, dtype=np.int64)),
        "output_sequence_lengths": series_block(osl),
        "legacy_loadgen_window_duration_ns": int(legacy_loadgen_window_ns) if use_window else None,  # type: ignore[arg-type]
        "qps": qps,
        "tps": tps,
        "finish_reason_counts": dict(finish_reasons or {}),
        "run_config": dict(run_config) if run_config is not None else None,
        "accuracy": [dict(a) for a in accuracy],
    }
