"""``raybench search-peak``: LoadGen's FindPeakPerformance on the fake SUT, against a direct calculation.

The fake SUT serves one query at a time (``capacity: 1``) in exactly 10 ms, so on virtual time a
query's latency is the single-server queue's sojourn (Lindley): ``d_i = max(a_i, d_{i-1}) + 10 ms``,
latency ``d_i - a_i``, with ``a_i`` the run's own Poisson schedule. With the query count fixed
(``min_query_count`` 300, no minimum duration) the schedule at ``q`` QPS is one exponential
sequence scaled by ``1/q``, so LoadGen's p99 (``sorted[int(0.99 n)]``) grows with ``q`` and the
highest QPS meeting p99 <= 40 ms is found by bisecting that calculation; the search must bracket it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raybench.config import load_run_config
from raybench.core.clock import VirtualClock
from raybench.inprocess import InProcessExecutor
from raybench.run import prepare_run
from raybench.submission.peak import is_finished, mid_value, run_peak_search, widen

SERVICE_NS, BOUND_NS = 10_000_000, 40_000_000
SETS = ["workload=synthetic", "sut=fake", "executor=inprocess", "scenario=Server", "report=false",
        "settings.min_duration_ms=0", "settings.min_query_count=300", f"settings.server_target_latency_ns={BOUND_NS}",
        "settings.server_target_qps=10", "sut.params.latency={dist: constant, ms: 10}", "sut.params.capacity=1"]


def _direct_p99_ns(qps: float, tmp: Path) -> int:
    """p99 latency of the single-server queue on the run's schedule at ``qps`` (no harness involved)."""
    cfg = load_run_config(None, [*SETS, f"out={tmp}", f"scenario.target_qps={qps!r}"])
    arrivals = prepare_run(cfg).plan.phases[0].intended_ns.astype(np.int64)
    done, lat = 0, np.empty(arrivals.shape[0], np.int64)
    for i, a in enumerate(arrivals):
        done = max(int(a), done) + SERVICE_NS
        lat[i] = done - a
    lat.sort()
    return int(lat[int(lat.shape[0] * 0.99)])


def test_loadgen_search_rules() -> None:
    assert widen(10.0, False, 1.0) == 20.0 and widen(10.0, False, 0.5) == 15.0 and widen(3.0, True, 1.0) == 6.0
    assert mid_value(40.0, 80.0, False) == 60.0 and mid_value(4.0, 9.0, True) == 6.0
    assert is_finished(48.90625, 49.0625, False, 1)  # floor 489 + 1 >= floor 490
    assert not is_finished(48.75, 49.0625, False, 1)  # 487 + 1 < 490
    assert is_finished(7.0, 8.0, True, 1) and not is_finished(6.0, 8.0, True, 1)


def test_peak_matches_the_direct_queue_calculation(tmp_path: Path) -> None:
    res = run_peak_search(tmp_path / "peak", SETS, executor_factory=lambda cfg: InProcessExecutor(VirtualClock()))
    values = [p.value for p in res.probes]
    # LoadGen's sequence: base 10, doubling (step 1) until 80 misses, then midpoints.
    assert values[:5] == [10.0, 20.0, 40.0, 80.0, 60.0]
    assert [p.phase for p in res.probes[:5]] == ["base", "boundary", "boundary", "boundary", "bisect"]
    # Every probe's verdict is the one the queue calculation gives at its QPS.
    for p in res.probes:
        assert p.ok == (_direct_p99_ns(p.value, tmp_path) <= BOUND_NS), p.value
    # The highest QPS meeting the bound, by bisecting the calculation to 1e-4 QPS.
    lo, hi = 40.0, 80.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _direct_p99_ns(mid, tmp_path) <= BOUND_NS else (lo, mid)
    assert res.lower is not None and res.upper is not None
    assert res.peak == res.lower <= lo < res.upper
    assert np.floor(res.lower * 10) + 1 >= np.floor(res.upper * 10)  # LoadGen's precision: 1 decimal
    assert abs(res.peak - lo) < 0.2
    summary = json.loads((tmp_path / "peak" / "peak_summary.json").read_text())
    assert summary["peak"] == res.peak and len(summary["probes"]) == len(res.probes)
    assert all(Path(p["run_dir"], "result.json").is_file() for p in summary["probes"])
    page = (tmp_path / "peak" / "report.html").read_text()
    assert f'id="peak" data-value="{json.dumps(res.peak)}"' in page
    assert (tmp_path / "peak" / "plots" / "peak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_base_that_misses_the_bound_stops_the_search(tmp_path: Path) -> None:
    res = run_peak_search(tmp_path / "peak", [*SETS, "settings.server_target_qps=90"],
                          executor_factory=lambda cfg: InProcessExecutor(VirtualClock()))
    assert res.peak is None and len(res.probes) == 1 and not res.probes[0].ok
    assert res.message == "the lower bound target_qps=90 misses the bounds; start lower (--start)"


@pytest.mark.parametrize(("sets", "message"), [
    (["scenario=Offline"], "scenario: peak search runs Server (target QPS) or Concurrency (streams), not Offline"),
    (["scenario=Concurrency"], "start: need a positive integer target_concurrency, got 2.5"),
])
def test_bad_requests_are_refused_before_any_run(tmp_path: Path, sets: list[str], message: str) -> None:
    start = 2.5 if sets == ["scenario=Concurrency"] else None
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        run_peak_search(tmp_path / "peak", [*SETS, *sets], start=start)
    assert not (tmp_path / "peak").exists()


def test_cli_exit_codes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raybench.cli import app

    runner = CliRunner()
    args = ["search-peak", "--workload", "synthetic", "--sut", "fake", "--executor", "inprocess", "--out", str(tmp_path),
            "--set", "settings.min_duration_ms=0", "--set", "settings.min_query_count=20",
            "--set", "sut.params={latency: {dist: constant, ms: 10}, capacity: 1}",
            "--set", "settings.server_target_latency_ns=1000000"]  # 1 ms bound under 10 ms service: the base misses
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert res.output.splitlines()[-1] == "no peak: the lower bound target_qps=200 misses the bounds; start lower (--start)"
    res = runner.invoke(app, [*args, "--scenario", "Offline"])
    assert res.exit_code == 2
    assert res.output == ("raybench: error: scenario: peak search runs Server (target QPS) or Concurrency (streams), "
                          "not Offline\n")


def test_concurrency_peak_matches_the_closed_loop_calculation(tmp_path: Path) -> None:
    """c streams on a 2-slot SUT, each query 10 ms to the first token then 3 x 2 ms (16 ms a query):
    every query waits ``ceil(c/2) - 1`` services, so p99 TTFT = 16 * (ceil(c/2) - 1) + 10 ms, and the
    largest c with TTFT <= 50 ms is 6 (42 ms; c = 7 gives 58 ms)."""
    sets = ["workload=synthetic", "sut=fake", "executor=inprocess", "scenario=Concurrency", "report=false",
            "settings.min_duration_ms=500", "settings.min_query_count=50", "settings.use_token_latencies=true",
            "settings.server_ttft_latency=50000000", "settings.server_tpot_latency=10000000",
            "settings.target_concurrency=1", "sut.params={tokens: {n: 4, ttft_ms: 10, tpot_ms: 2}, capacity: 2}"]
    res = run_peak_search(tmp_path / "peak", sets, executor_factory=lambda cfg: InProcessExecutor(VirtualClock()))
    assert [(p.value, p.ok) for p in res.probes] == [(1, True), (2, True), (4, True), (8, False), (6, True), (7, False)]
    expected = [16.0 * (-(-int(p.value) // 2) - 1) + 10.0 for p in res.probes]  # ms, from ceil(c/2)
    assert [p.p_ttft_ms for p in res.probes] == pytest.approx(expected, rel=1 / 2048)  # the histogram's bound
    assert (res.field, res.peak, res.lower, res.upper) == ("target_concurrency", 6.0, 6.0, 7.0)


def test_a_probe_that_cannot_run_keeps_the_probes_before_it(tmp_path: Path) -> None:
    # 2 s at 80 QPS plans 160 queries, over max_plan_queries: the fourth probe is refused before it runs.
    sets = ["workload=synthetic", "sut=fake", "executor=inprocess", "scenario=Server", "report=false",
            "settings.min_duration_ms=2000", "settings.min_query_count=20", "settings.server_target_qps=10",
            "settings.server_target_latency_ns=50000000", "sut.params.latency={dist: constant, ms: 1}",
            "max_plan_queries=150"]
    with pytest.raises(ValueError, match="max_plan_queries"):
        run_peak_search(tmp_path / "peak", sets, executor_factory=lambda cfg: InProcessExecutor(VirtualClock()))
    summary = json.loads((tmp_path / "peak" / "peak_summary.json").read_text())
    assert [p["value"] for p in summary["probes"]] == [10.0, 20.0, 40.0]
    assert (summary["peak"], summary["lower"], summary["upper"]) == (None, 40.0, None)
    assert summary["message"].startswith("stopped at probe 3: ")
