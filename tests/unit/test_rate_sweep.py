"""``raybench sweep --rates``: one Server run per request rate with the config's load shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raybench.core.clock import VirtualClock
from raybench.inprocess import InProcessExecutor
from raybench.sweep import run_sweep, sweep_values

# Fake SUT streaming 16 tokens: first after 20 ms, then one every 5 ms.
BASE = [
    "workload=synthetic",
    "sut=fake",
    "mlperf_conf=none",
    "settings.min_duration_ms=1000",
    "settings.min_query_count=1",
    'sut.params={"tokens": {"n": 16, "ttft_ms": 20, "tpot_ms": 5}}',
]


def virtual(_cfg: object) -> InProcessExecutor:
    return InProcessExecutor(VirtualClock(), shards=2)


def test_rate_values_are_a_mode_of_their_own() -> None:
    assert sweep_values(rates=[10, 20, 40]) == ("rate", [10.0, 20.0, 40.0])
    with pytest.raises(ValueError, match="exactly one of"):
        sweep_values(rates=[1.0], qps=[1.0])
    with pytest.raises(ValueError, match="rates: need positive request rates"):
        sweep_values(rates=[5.0, 0.0])


def test_constant_rate_sweep_exact_counts_and_files(tmp_path: Path) -> None:
    res = run_sweep(tmp_path, [*BASE, "scenario.arrival.kind=constant"], mode="rate", values=[5.0, 20.0],
                    executor_factory=virtual)
    assert res.mode == "rate" and [p.qps_target for p in res.points] == [5.0, 20.0]
    # constant rate over min_duration 1 s: queries at 0, 1/r, ..., 1 s -> r + 1 queries
    assert [p.n_completed for p in res.points] == [6, 21]
    for p in res.points:
        assert p.ttft_p90_ms == pytest.approx(20.0) and p.output_tokens == 16 * p.n_completed
        summary = json.loads((Path(p.run_dir) / "result_summary.json").read_text())
        assert summary["run_config"]["load_pattern"] == {"type": "constant", "target_qps": p.qps_target}
        result = json.loads((Path(p.run_dir) / "result.json").read_text())
        assert result["load_shape"]["kind"] == "constant" and result["samples_completed"] == p.n_completed
    assert [Path(p.run_dir).name for p in res.points] == ["rate5", "rate20"]
    sweep = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert sweep["mode"] == "rate" and [r["qps_target"] for r in sweep["points"]] == [5.0, 20.0]
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "tps_vs_rate.png").exists()


def test_gamma_rate_sweep_records_the_shape(tmp_path: Path) -> None:
    res = run_sweep(tmp_path, [*BASE, "scenario.arrival.kind=gamma", "scenario.arrival.burstiness=0.5"],
                    mode="rate", values=[10.0], executor_factory=virtual)
    [p] = res.points
    summary = json.loads((Path(p.run_dir) / "result_summary.json").read_text())
    assert summary["run_config"]["load_pattern"] == {"type": "gamma", "target_qps": 10.0, "burstiness": 0.5}
    assert p.n_completed > 1 and p.n_failed == 0


def test_cli_rates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raybench.cli import app

    r = CliRunner().invoke(
        app,
        ["sweep", "--workload", "synthetic", "--sut", "fake", "--executor", "inprocess", "--rates", "10,20",
         "--set", "mlperf_conf=none", "--set", "settings.min_duration_ms=200", "--set", "settings.min_query_count=1",
         "--set", "scenario.arrival.kind=constant",
         "--set", 'sut.params={"tokens": {"n": 4, "ttft_ms": 5, "tpot_ms": 1}}', "-o", str(tmp_path)],
    )  # fmt: skip
    # 3 and 5 queries are far too few for Server's early stopping: INVALID points, exit code 1
    assert r.exit_code == 1, r.output
    assert "sweep (rate): 10, 20" in r.output and "rate=10:" in r.output and "rate=20:" in r.output
    [d] = list(tmp_path.iterdir())
    assert d.name.endswith("-rate") and (d / "rate20" / "result_summary.json").exists()
    rows = json.loads((d / "sweep_summary.json").read_text())["points"]
    assert [row["n_completed"] for row in rows] == [3, 5]  # 0, 100, 200 ms and 0, 50, ..., 200 ms
    assert [row["invalid_reasons"][0].startswith("early stopping not met") for row in rows] == [True, True]
