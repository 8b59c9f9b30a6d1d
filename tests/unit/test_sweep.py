"""``raybench sweep``: points, warm-up exclusion, exact per-point metrics, files (virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raybench.core.clock import VirtualClock
from raybench.inprocess import InProcessExecutor
from raybench.sweep import point_metrics, run_sweep, sweep_values

# Fake SUT streaming 16 tokens: first after 20 ms, then one every 5 ms -> latency 95 ms.
BASE = [
    "workload=synthetic",
    "sut=fake",
    "mlperf_conf=none",
    "settings.min_duration_ms=1000",
    "settings.min_query_count=10",
    'sut.params={"tokens": {"n": 16, "ttft_ms": 20, "tpot_ms": 5}}',
]
LAT_S = 0.095


def virtual(_cfg: object) -> InProcessExecutor:
    return InProcessExecutor(VirtualClock())


def test_sweep_values_follow_the_endpoints_rules_or_the_given_list() -> None:
    assert sweep_values(c_min=1, c_max=256) == ("concurrency", [1, 4, 7, 18, 41, 104, 256])
    assert sweep_values(concurrencies=[8, 1, 8, 2]) == ("concurrency", [1, 2, 8])
    assert sweep_values(qps=[0.5, 2]) == ("qps", [0.5, 2.0])
    with pytest.raises(ValueError, match="exactly one of"):
        sweep_values(concurrencies=[1], qps=[1.0])
    with pytest.raises(ValueError, match="exactly one of"):
        sweep_values()
    with pytest.raises(ValueError, match="c_max: must be > 32"):
        sweep_values(c_min=1, c_max=16)
    with pytest.raises(ValueError, match="qps: need positive"):
        sweep_values(qps=[0.0])


def test_concurrency_sweep_exact_points_and_files(tmp_path: Path) -> None:
    seen: list[int] = []
    res = run_sweep(
        tmp_path, BASE, mode="concurrency", values=[1, 2, 4], warmup_s=0.1, executor_factory=virtual,
        on_point=lambda p: seen.append(p.concurrency),
    )  # fmt: skip
    assert seen == [1, 2, 4]
    for p, c in zip(res.points, (1, 2, 4), strict=True):
        # Every slot completes a query every 95 ms: TPS = c * 16 / 0.095, QPS = c / 0.095.
        assert p.system_tps == pytest.approx(c * 16 / LAT_S, rel=1e-12)
        assert p.qps == pytest.approx(c / LAT_S, rel=1e-12)
        assert p.tps_per_user == pytest.approx(200.0) and p.tpot_p90_ms == pytest.approx(5.0)
        assert p.ttft_p90_ms == pytest.approx(20.0)
        assert p.latency_ms["p50"] == pytest.approx(95.0) and p.latency_ms["p99"] == pytest.approx(95.0)
        # Warm-up 0.1 s drops the queries issued at 0 and 95 ms on every slot.
        assert p.n_warmup == 2 * c and p.n_failed == 0
        assert p.output_tokens == 16 * p.n_completed and p.validity == "VALID"
        # The run lasted >= 1.1 s (min duration + warm-up), the kept window >= 1 s.
        assert p.elapsed_s >= 1.0 and p.elapsed_s == pytest.approx(round(p.elapsed_s / LAT_S) * LAT_S)
        summary = json.loads((Path(p.run_dir) / "result_summary.json").read_text())
        assert summary["n_samples_completed"] == p.n_completed and summary["n_samples_issued"] == p.n_completed
        assert summary["tps"] == pytest.approx(p.system_tps) and summary["qps"] == pytest.approx(p.qps)
        assert summary["ttft"]["percentiles"]["90.0"] == 20_000_000.0
        assert summary["run_config"]["load_pattern"] == {"type": "concurrency", "target_concurrency": c}
        assert set(summary["latency"]["early_stopping_percentiles"]) == {"99.0", "90.0"}
    # Same interactivity everywhere, so the highest throughput dominates the others.
    assert res.frontier == [4]
    data = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert data["mode"] == "concurrency" and data["frontier"] == [4]
    row = data["points"][1]
    for key in ("concurrency", "system_tps", "tps_per_user", "ttft_p90_ms", "qps", "validity", "run_dir"):
        assert key in row
    assert row["concurrency"] == 2 and row["on_frontier"] is False
    assert data["endpoints_rule_problems"] == ["c_max must be > 32 for an Endpoints Pareto submission"]
    for name in ("pareto.png", "tps_vs_concurrency.png", "ttft_p90_vs_concurrency.png", "interactivity_vs_concurrency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qps_sweep_runs_poisson_server_points(tmp_path: Path) -> None:
    res = run_sweep(tmp_path, BASE, mode="qps", values=[5.0, 20.0], executor_factory=virtual)
    assert [p.qps_target for p in res.points] == [5.0, 20.0] and [p.concurrency for p in res.points] == [None, None]
    for p in res.points:
        assert p.ttft_p90_ms == pytest.approx(20.0) and p.tps_per_user == pytest.approx(200.0)
        assert p.n_warmup == 0 and p.output_tokens == 16 * p.n_completed
        result = json.loads((Path(p.run_dir) / "result.json").read_text())
        assert result["scenario"] == "Server" and result["settings"]["server_target_qps"] == p.qps_target
        assert result["samples_completed"] == p.n_completed
    assert res.points[1].n_completed > res.points[0].n_completed
    assert (tmp_path / "tps_vs_qps.png").exists() and (tmp_path / "pareto.png").exists()


def test_point_metrics_on_hand_made_records() -> None:
    ms = 1_000_000
    rec = {
        "intended_ns": np.array([0, 0, 100, 100, 200, 200]) * ms,
        "first_token_ns": np.array([10, 10, 120, 130, 220, 0]) * ms,
        "completed_ns": np.array([50, 60, 160, 200, 300, 250]) * ms,
        "n_tokens": np.array([5, 5, 5, 8, 11, 1]),
        "error": np.array([0, 0, 0, 0, 0, 1]),
    }
    m, s = point_metrics(rec, concurrency=2, qps_target=None, warmup_ns=0, warmup_queries=2)
    # Kept: rows 2..5; row 5 failed. Window 100 ms .. 300 ms.
    assert m["n_warmup"] == 2 and m["n_completed"] == 3 and m["n_failed"] == 1
    assert m["output_tokens"] == 24 and m["elapsed_s"] == pytest.approx(0.2)
    assert m["system_tps"] == pytest.approx(120.0) and m["qps"] == pytest.approx(15.0)
    # TPOT = (lat - ttft) / (n - 1): 40/4 = 10, 70/7 = 10, 80/10 = 8 ms -> p90 (lower) = 10 ms.
    assert m["tpot_p90_ms"] == pytest.approx(10.0) and m["tps_per_user"] == pytest.approx(100.0)
    assert m["ttft_p90_ms"] == pytest.approx(20.0)  # TTFTs 20, 30, 20 -> p90 (lower) = 20
    assert m["latency_ms"]["p50"] == pytest.approx(100.0)  # latencies 60, 100, 100
    assert s["n_samples_failed"] == 1 and s["output_sequence_lengths"]["total"] == 24
    m2, _ = point_metrics(rec, concurrency=2, qps_target=None, warmup_ns=150 * ms)
    assert m2["n_warmup"] == 4 and m2["n_completed"] == 1 and m2["output_tokens"] == 11


def test_sweep_rejects_bad_mode_before_running(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode: expected"):
        run_sweep(tmp_path, BASE, mode="burst", values=[1])
    with pytest.raises(ValueError, match="warmup_s"):
        run_sweep(tmp_path, BASE, mode="qps", values=[1.0], warmup_s=-1)


def test_cli_sweep_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raybench.cli import app

    r = CliRunner().invoke(
        app,
        ["sweep", "--workload", "synthetic", "--sut", "fake", "--executor", "inprocess", "--concurrency", "1,2",
         "--set", "mlperf_conf=none", "--set", "settings.min_duration_ms=200", "--set", "settings.min_query_count=4",
         "--set", 'sut.params={"tokens": {"n": 4, "ttft_ms": 5, "tpot_ms": 1}}', "-o", str(tmp_path)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "sweep (concurrency): 1, 2" in r.output and "Pareto frontier" in r.output
    [d] = list(tmp_path.iterdir())
    assert (d / "sweep_summary.json").exists() and (d / "c00001" / "result_summary.json").exists()
    bad = CliRunner().invoke(app, ["sweep", "--workload", "synthetic", "--qps", "1,x"])
    assert bad.exit_code == 2 and "comma-separated list" in bad.output
