"""A harness that cannot keep up is flagged, not silently reported (real clock)."""

from __future__ import annotations

from pathlib import Path

from raybench.config import load_run_config
from raybench.inprocess import InProcessExecutor
from raybench.run import run_benchmark


def test_harness_falling_behind_is_flagged(tmp_path: Path) -> None:
    # The SUT blocks the event loop 20 ms per query while 200 queries/s are due: the issuing
    # loop falls further behind with every query.
    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", f"out={tmp_path}",
                                 "sut.params.block_ms=20", "sut.params.latency={dist: constant, ms: 1}",
                                 "settings.server_target_qps=200", "settings.min_duration_ms=1000",
                                 "settings.server_target_latency_ns=10000000000"])
    m = run_benchmark(cfg, InProcessExecutor()).metrics
    assert m.validity == "INVALID"
    assert m.lateness["p99"] > 100_000_000
    assert any(r.startswith("harness fell behind: send lateness p99") for r in m.invalid_reasons)
