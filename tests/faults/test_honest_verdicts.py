"""Verdicts that do not flatter: a harness that cannot keep up, failed samples, honest counts."""

from __future__ import annotations

import json
from pathlib import Path

from raybench.testing import virtual_run


def test_closed_loop_harness_that_cannot_keep_its_streams_busy_is_invalid(tmp_path: Path) -> None:
    """2000 streams on one shard against a 2 ms SUT: the loop needs tens of ms per turn, so the
    SUT's 2 ms become ~100 ms; the run must say the harness fell behind, not report that latency."""
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Concurrency", f"out={tmp_path}",
                                 "settings.target_concurrency=2000", "settings.min_duration_ms=1500",
                                 "sut.params.latency={dist: constant, ms: 2}", "report=false"])
    m = run_benchmark(cfg, InProcessExecutor()).metrics
    assert m.validity == "INVALID"
    assert any(r.startswith("harness fell behind: send lateness p99") for r in m.invalid_reasons), m.invalid_reasons
    assert m.lateness["p99"] > 10_000_000 and m.latency["p50"] > 10 * 2_000_000


def test_failed_samples_are_errors_in_the_mlperf_detail_log(tmp_path: Path) -> None:
    out = virtual_run(tmp_path, "scenario=Offline", "sut.params.error_rate=0.1",
                      "settings.min_duration_ms=500", "settings.offline_expected_qps=1000")
    m = out.metrics
    assert m.validity == "INVALID" and m.num_errors > 0
    lines = [json.loads(ln.split(":::MLLOG ", 1)[1]) for ln in (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines()]
    errors = [rec for rec in lines if rec["metadata"]["is_error"]]
    assert [rec["key"] for rec in errors] == ["error_runtime"]
    assert errors[0]["value"] == f"{m.num_errors} sample(s) failed: fake SUT injected error"
    assert next(rec["value"] for rec in lines if rec["key"] == "num_errors") == 1
    assert next(rec["value"] for rec in lines if rec["key"] == "raybench_failed_samples") == m.num_errors
    summary = (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert summary.rstrip().endswith("1 ERROR encountered. See detailed log.")


def test_min_queries_message_counts_what_completed(tmp_path: Path) -> None:
    out = virtual_run(tmp_path, "scenario=Server", "sut.params.error_rate=0.5", "settings.server_target_qps=100",
                      "settings.min_duration_ms=1000", "settings.min_query_count=100", "max_error_rate=1")
    m = out.metrics
    (reason,) = [r for r in m.invalid_reasons if r.startswith("min queries not met")]
    assert reason == (f"min queries not met: {m.queries_issued} queries issued / {m.samples_completed} samples "
                      f"completed, need 100 / 100")
    assert m.samples_completed < m.samples_issued
