"""MLPerf Endpoints math: TPOT definitions, sweep regions/points, Pareto step function, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from raybench.core.endpoints import (
    ParetoPoint,
    build_result_summary,
    compute_regions,
    pareto_frontier,
    region_of,
    select_sweep_points,
    series_block,
    step_function,
    step_value,
    validate_sweep_points,
)
from raybench.core.tokens import inter_token_latencies_ns, tpot_ns

MS = 1_000_000


def test_tpot_is_loadgen_definition() -> None:
    # 500 ms latency, first token at 100 ms, 5 tokens: LoadGen spreads 400 ms over 4 tokens;
    # a one-token sample has no TPOT.
    assert tpot_ns([500 * MS, 300 * MS], [100 * MS, 100 * MS], [5, 1]).tolist() == [100 * MS]
    assert inter_token_latencies_ns([0, 10, 25, 45]).tolist() == [10, 15, 20]
    assert inter_token_latencies_ns([7]).tolist() == []


@pytest.mark.parametrize(
    ("c_min", "c_max", "expected"),
    [
        (1, 256, {"ultra_low": (1, 1), "low": (2, 7), "medium": (8, 41), "high": (42, 256), "margin": (257, 282)}),
        (32, 8192, {"ultra_low": (1, 32), "low": (33, 52), "medium": (53, 437), "high": (438, 8192),
                    "margin": (8193, 9012)}),
        # The rules' worked example C prints 116 from a rounded 2^6.652; the reference algorithm
        # gives round(16 + 1008 ** (2/3)) = round(116.53) = 117.
        (16, 1024, {"ultra_low": (1, 16), "low": (17, 26), "medium": (27, 117), "high": (118, 1024),
                    "margin": (1025, 1127)}),
        (1, 33, {"ultra_low": (1, 1), "low": (2, 4), "medium": (5, 11), "high": (12, 33), "margin": (34, 37)}),
    ],
)
def test_regions_match_the_reference_algorithm(c_min: int, c_max: int, expected: dict) -> None:
    r = compute_regions(c_min, c_max)
    assert {k: (v.start, v.end) for k, v in r.items()} == expected


def test_region_bounds_are_validated_and_banker_rounded() -> None:
    for bad in ((0, 256), (33, 256), (1, 32)):
        with pytest.raises(ValueError):
            compute_regions(*bad)
    # c_min=2, c_max=66: 2^I = 64^(1/3) = 4 exactly -> 6; 2^(2I) = 16 -> 18 (no rounding needed);
    # c_min=1, c_max=9: not allowed (c_max <= 32), so check banker's rounding via 2.5 -> 2 directly.
    assert round(2.5) == 2 and round(3.5) == 4
    r = compute_regions(2, 66)
    assert (r["low"].end, r["medium"].end) == (6, 18)
    assert region_of(2, r) == "ultra_low" and region_of(6, r) == "low" and region_of(19, r) == "high"
    assert region_of(73, r) == "margin" and region_of(74, r) is None


@pytest.mark.parametrize(
    ("c_min", "c_max", "n", "expected"),
    [
        (1, 256, 7, [1, 4, 7, 18, 41, 104, 256]),
        (1, 256, 10, [1, 3, 5, 7, 14, 24, 41, 77, 140, 256]),
        (32, 8192, 7, [32, 41, 52, 152, 437, 1894, 8192]),
        (16, 1024, 7, [16, 21, 26, 56, 117, 348, 1024]),
        (1, 33, 10, [1, 2, 3, 4, 7, 8, 11, 17, 24, 33]),
    ],
)
def test_sweep_points_exact(c_min: int, c_max: int, n: int, expected: list[int]) -> None:
    pts = select_sweep_points(c_min, c_max, n)
    assert pts == expected
    assert validate_sweep_points(pts, c_max) == []


def test_sweep_point_limits_and_validation() -> None:
    assert len(select_sweep_points(1, 256, 32)) == 32
    with pytest.raises(ValueError, match="n_points"):
        select_sweep_points(1, 256, 6)
    with pytest.raises(ValueError, match="n_points"):
        select_sweep_points(1, 256, 33)
    assert validate_sweep_points([1, 2, 3, 4, 5, 6, 7], 256) == [
        "no point in the medium region 8..41",
        "no point in the high region 42..256",
    ]
    assert validate_sweep_points([1, 2, 4, 7, 18, 41, 300], 256) == [
        "no point in the high region 42..256",
        "points beyond the margin 282: [300]",
    ]
    assert validate_sweep_points([1, 4, 18, 104], 256) == ["need 7..32 points, got 4"]


POINTS = [
    ParetoPoint(1, 100.0, 200.0),
    ParetoPoint(4, 350.0, 150.0),
    ParetoPoint(8, 300.0, 120.0),  # dominated by c=4
    ParetoPoint(16, 900.0, 90.0),
    ParetoPoint(64, 1500.0, 40.0),
    ParetoPoint(128, 1400.0, 20.0),  # dominated by c=64
    ParetoPoint(256, 1500.0, 40.0),  # ties c=64: the lower concurrency is kept
]


def test_pareto_frontier_and_exact_step_function() -> None:
    front = pareto_frontier(POINTS)
    assert [p.concurrency for p in front] == [64, 16, 4, 1]
    xs, ys = step_function(POINTS)
    assert xs.tolist() == [0.0, 40.0, 40.0, 90.0, 90.0, 150.0, 150.0, 200.0]
    assert ys.tolist() == [1500.0, 1500.0, 900.0, 900.0, 350.0, 350.0, 100.0, 100.0]
    # No interpolation: between measured points the curve holds a measured value.
    cases = {0.0: 1500.0, 40.0: 1500.0, 40.01: 900.0, 89.0: 900.0, 90.0: 900.0, 120.0: 350.0,
             150.0: 350.0, 199.9: 100.0, 200.0: 100.0, 200.1: None}
    assert {x: step_value(POINTS, x) for x in cases} == cases
    assert step_function([])[0].size == 0


def test_series_block_exact() -> None:
    b = series_block(np.arange(1, 11), percentiles=(99.9, 90.0, 50.0), n_buckets=4)
    assert {k: b[k] for k in ("total", "min", "max", "median", "avg")} == {
        "total": 55, "min": 1, "max": 10, "median": 5.0, "avg": 5.5}
    assert b["std_dev"] == pytest.approx(3.0276503540974917, rel=1e-12)
    assert b["percentiles"] == {"99.9": 9.0, "90.0": 9.0, "50.0": 5.0}
    edges = np.exp(np.linspace(0, math.log(10), 5))
    assert b["histogram"]["buckets"] == [[float(a), float(c)] for a, c in zip(edges[:-1], edges[1:], strict=False)]
    assert b["histogram"]["counts"] == [1, 2, 2, 5]
    assert "early_stopping_percentiles" not in b
    assert series_block([]) == {}


def test_result_summary_schema_and_throughput_windows() -> None:
    es = lambda arr, p: float(arr[-1]) if p >= 0.99 else None  # noqa: E731 - stand-in estimator
    common = dict(
        ttft_ns=[10 * MS, 20 * MS, 30 * MS], tpot_ns=[1 * MS, 2 * MS, np.nan],
        latency_ns=[100 * MS, 200 * MS, 300 * MS], output_tokens=[10, 20, 30], input_tokens=[5, 5, 6],
        n_samples_issued=4, n_samples_failed=1, finish_reasons={"length": 3}, run_config={"load_pattern": {
            "type": "concurrency", "target_concurrency": 2}}, early_stopping=es,
    )
    s = build_result_summary(duration_ns=2 * 10**9, legacy_loadgen_window_ns=4 * 10**8, **common)
    assert list(s) == ["version", "git_sha", "test_started_at", "n_samples_issued", "n_samples_completed",
                       "n_samples_failed", "duration_ns", "state", "complete", "ttft", "tpot", "latency",
                       "input_sequence_lengths", "output_sequence_lengths",
                       "legacy_loadgen_window_duration_ns", "qps", "tps", "finish_reason_counts",
                       "run_config", "accuracy"]
    assert (s["n_samples_completed"], s["qps"], s["tps"]) == (3, 5.0, 150.0)  # (3-1)/0.4 s, 60/0.4 s
    assert s["legacy_loadgen_window_duration_ns"] == 4 * 10**8
    assert s["tpot"]["total"] == 3 * MS and s["tpot"]["max"] == 2 * MS  # NaN (1-token) dropped
    assert s["ttft"]["early_stopping_percentiles"] == {"99.0": 30 * MS, "90.0": None}
    assert s["output_sequence_lengths"]["total"] == 60 and s["input_sequence_lengths"]["max"] == 6
    native = build_result_summary(duration_ns=2 * 10**9, **common)
    assert (native["qps"], native["tps"], native["legacy_loadgen_window_duration_ns"]) == (1.5, 30.0, None)
    json.dumps(s, allow_nan=False)  # strictly serializable
