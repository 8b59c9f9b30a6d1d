"""Early stopping: LoadGen's numbers (loadgen/early_stopping.cc, results.cc), exactly."""

from __future__ import annotations

import numpy as np
import pytest

from raybench.core.early_stopping import (
    MinPassingQueriesFinder,
    _largest_passing_t,
    beta_regularized,
    find_min_passing,
    latency_early_stopping,
    odds,
    server_early_stopping,
)
from raybench.core.histogram import Histogram
from raybench.core.stats import ExactStats


@pytest.mark.parametrize(("t", "total"), [(0, 459), (1, 662), (10, 2010), (100, 12571), (1000, 107569)])
def test_server_totals_at_p99(t, total):
    assert find_min_passing(t, 0.99) + t == total


@pytest.mark.parametrize(
    ("p", "floor"),
    [(0.50, 11), (0.75, 24), (0.80, 31), (0.90, 64), (0.95, 130), (0.97, 219), (0.99, 662), (0.999, 6636)],
)
def test_latency_floors(p, floor):
    assert find_min_passing(1, p) + 1 == floor


def test_beta_regularized_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for h, t, p in [
        (459, 0, 0.99),
        (661, 1, 0.99),
        (2000, 10, 0.99),
        (63, 1, 0.9),
        (5000, 400, 0.9),
        (10, 1, 0.5),
    ]:
        want = float(special.betainc(h, 1 + t, p))
        assert odds(h, t, p) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert beta_regularized(0.99, 459, 1) == pytest.approx(0.99**459, rel=1e-12)


def test_find_min_passing_is_the_true_minimum():
    """LoadGen's bracketed search equals an unbracketed search on scipy's betainc."""
    special = pytest.importorskip("scipy.special")

    def scratch(t: int, p: float) -> int:
        lo, hi = 1, 1
        while special.betainc(hi, 1 + t, p) >= 0.01:
            hi *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if special.betainc(mid, 1 + t, p) < 0.01 else (mid + 1, hi)
        return lo

    for p in (0.9, 0.99):
        fresh = MinPassingQueriesFinder()  # LoadGen order: t = 0, 1, 2, ... on an empty cache
        assert [fresh(t, p) for t in range(300)] == [scratch(t, p) for t in range(300)]


def test_galloping_search_equals_loadgen_linear_scan():
    for p, n in [
        (0.9, 64),
        (0.9, 80),
        (0.9, 81),
        (0.9, 201),
        (0.9, 708),
        (0.9, 5000),
        (0.99, 662),
        (0.99, 20000),
    ]:
        finder, t = MinPassingQueriesFinder(), 1
        for i in range(2, n + 1):  # PerformanceSummary::EarlyStopping's loop
            if n < finder(i, p) + i:
                t = i - 1
                break
        assert _largest_passing_t(n, p) == t, (p, n)


# ---------------------------------------------------------------- Server
def test_server_boundaries():
    ok = server_early_stopping(459, 0, 0.99)
    assert ok.met and ok.queries_needed == 0 and ok.min_queries_required == 459
    assert ok.lines == (" * Run successful.",)
    bad = server_early_stopping(458, 0, 0.99)
    assert not bad.met and bad.queries_needed == 1 and bad.estimate_ns is None
    assert bad.lines == (
        " * Run unsuccessful.",
        " * Processed 458 queries.",
        " * Would need to run at least 1 more queries,",
        " with the run being successful if every additional",
        " query were under latency.",
    )
    assert server_early_stopping(2010, 10, 0.99).met
    r = server_early_stopping(2009, 10, 0.99)
    assert (r.met, r.queries_needed, r.overlatency_count, r.queries_issued) == (False, 1, 10, 2009)
    r = server_early_stopping(10000, 100, 0.99)
    assert (r.met, r.queries_needed, r.min_queries_required) == (False, 2571, 12571)
    with pytest.raises(ValueError, match="overlatency_count"):
        server_early_stopping(5, 6, 0.99)
    with pytest.raises(ValueError, match="percentile"):
        server_early_stopping(5, 0, 99.0)


# ---------------------------------------------------------------- SingleStream / MultiStream
def shuffled_ms(n: int) -> np.ndarray:
    """Latencies 1 ms, 2 ms, ..., n ms in a scrambled order."""
    return np.random.default_rng(5).permutation(np.arange(1, n + 1, dtype=np.int64) * 1_000_000)


def test_single_stream_estimate_and_lines():
    # n = 201 at p90: h(10)+10 = 197 <= 201 < h(11)+11 = 210, so t = 10 and the estimate is
    # sorted[201 - 10] = sorted[191] = 192 ms; LoadGen's log for n=201 also says "discard 9".
    r = latency_early_stopping(ExactStats(shuffled_ms(201)), 0.90, multistream_percentile=0.99)
    assert r.met and r.estimate_ns == 192_000_000 and r.overlatency_count == 10
    assert (r.min_queries_required, r.queries_needed, r.multistream_estimate_ns) == (64, 0, None)
    assert r.lines == (
        " * Processed at least 64 queries (201).",
        " * Would discard 9 highest latency queries.",
        " * Early stopping 90.0th percentile estimate: 192000000",
        " * Not enough queries processed for 99.0th percentile",
        " early stopping estimate (would need to process at",
        " least 662 total queries).",
    )


def test_single_stream_with_multistream_estimate():
    # n = 708 at p90: h(52)+52 = 704 <= 708 < 716, t = 52 (LoadGen log: "discard 51");
    # at p99: 662 <= 708 < h(2)+2 = 838, t = 1, so the p99 estimate is the max.
    r = latency_early_stopping(ExactStats(shuffled_ms(708)), 0.90, multistream_percentile=0.99)
    assert r.estimate_ns == (708 - 52 + 1) * 1_000_000 and r.multistream_estimate_ns == 708_000_000
    assert r.lines[1:] == (
        " * Would discard 51 highest latency queries.",
        " * Early stopping 90.0th percentile estimate: 657000000",
        " * Early stopping 99.0th percentile estimate: 708000000",
    )


def test_multistream_at_the_floor_and_below():
    r = latency_early_stopping(ExactStats(shuffled_ms(662)), 0.99)
    assert r.met and r.overlatency_count == 1 and r.estimate_ns == 662_000_000  # t=1 -> the max
    assert r.lines[1] == " * Would discard 0 highest latency queries."
    below = latency_early_stopping(ExactStats(shuffled_ms(661)), 0.99)
    assert not below.met and below.estimate_ns is None and below.queries_needed == 1
    assert below.lines == (
        " * Only processed 661 queries.",
        " * Need to process at least 662 queries for early stopping.",
    )


def test_p999_label_has_one_decimal_like_loadgen():
    r = latency_early_stopping(ExactStats(shuffled_ms(7000)), 0.999)
    assert r.lines[2].startswith(" * Early stopping 99.9th percentile estimate: ")  # DoubleToString(99.9, 1)


def test_histogram_estimate_within_tolerance():
    lat = np.rint(np.random.default_rng(9).lognormal(np.log(5e6), 0.5, 50_000)).astype(np.int64)
    h = Histogram()
    h.record_many(lat)
    exact = latency_early_stopping(ExactStats(lat), 0.90)
    approx = latency_early_stopping(h, 0.90)
    assert exact.overlatency_count == approx.overlatency_count
    assert abs(approx.estimate_ns - exact.estimate_ns) <= exact.estimate_ns / 2048
    assert exact.estimate_ns == int(np.sort(lat)[50_000 - exact.overlatency_count])


# ---------------------------------------------------------------- the real LoadGen
_LOADGEN_RUN = r"""
import sys, threading
import mlperf_loadgen as lg
n, scenario = int(sys.argv[1]), sys.argv[2]
issued = [0]
def issue(samples):
    for s in samples:
        issued[0] += 1
        k = issued[0]
        if scenario == "Server":
            delay = 0.02 if k % 3 == 0 else 0.0  # a third of queries over the 10 ms bound
        else:
            delay = {10: 0.05, 20: 0.04, 30: 0.03}.get(k, 0.0)
        done = lambda s=s: lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])
        threading.Timer(delay, done).start() if delay else done()
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda x: None, lambda x: None)
ts = lg.TestSettings()
ts.scenario = getattr(lg.TestScenario, scenario)
ts.mode = lg.TestMode.PerformanceOnly
ts.min_duration_ms = 0
ts.min_query_count = ts.max_query_count = n
ts.single_stream_expected_latency_ns = 1_000_000
ts.server_target_qps = 2000
ts.server_target_latency_ns = 10_000_000
lg.StartTest(sut, qsl, ts)
lg.DestroyQSL(qsl)
lg.DestroySUT(sut)
"""


def _run_loadgen(tmp_path, n: int, scenario: str) -> tuple[list[str], dict[str, object]]:
    import json
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(_LOADGEN_RUN)
    subprocess.run(
        [sys.executable, str(script), str(n), scenario],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    summary = (tmp_path / "mlperf_log_summary.txt").read_text().splitlines()
    start = summary.index("Early Stopping Result:") + 1
    lines = summary[start : summary.index("", start)]
    detail = {}
    for line in (tmp_path / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            rec = json.loads(line[len(":::MLLOG ") :])
            detail[rec["key"]] = rec["value"]
    return lines, detail


def test_matches_real_loadgen_server(tmp_path):
    pytest.importorskip("mlperf_loadgen")
    lines, detail = _run_loadgen(tmp_path, 600, "Server")
    n, t = detail["result_query_count"], detail["result_overlatency_query_count"]
    assert n == 600 and t >= 100  # ~200 by construction
    assert server_early_stopping(n, t, 0.99).lines == tuple(lines)


def test_matches_real_loadgen_single_stream(tmp_path):
    pytest.importorskip("mlperf_loadgen")
    lines, detail = _run_loadgen(tmp_path, 90, "SingleStream")
    # 81 <= 90 < 97 at p90: t = 2, so LoadGen reports the 2nd-highest latency: the 40 ms query
    est = detail["early_stopping_latency_ss"]
    assert 40_000_000 <= est < detail["result_max_latency_ns"]
    fake = ExactStats(np.array([est] * 89 + [detail["result_max_latency_ns"]]))
    assert latency_early_stopping(fake, 0.90, multistream_percentile=0.99).lines == tuple(lines)
