"""Shards agree on T0 by wall clock; skew moves when a shard starts, never what it measures.

``RAYBENCH_TEST_WALL_OFFSET_NS=1:50000000`` makes shard 1 read its wall clock 50 ms fast. The
driver's skew estimate (min-RTT round trips before T0) must see ~50 ms; shard 1 must start ~50 ms
early (both shards share this host's CLOCK_MONOTONIC, so their monotonic T0s are directly
comparable); every shard's latencies must match a run without the offset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from raybench.config import load_run_config
from raybench.ray.clocks import T0_AGREEMENT, clock_summary, parse_wall_offsets
from raybench.ray.executor import RayExecutor
from raybench.run import run_benchmark
from raybench.testing import RAY_TEST_SETS

pytestmark = pytest.mark.ray

MS = 1_000_000
OFFSET = 50 * MS


def _run(tmp_path: Path) -> tuple[dict[str, Any], list[Any]]:
    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", f"out={tmp_path}", "shards=2",
                                 *RAY_TEST_SETS, "sut.params.latency={dist: constant, ms: 20}",
                                 "settings.server_target_qps=40", "settings.min_duration_ms=3000",
                                 "settings.server_target_latency_ns=200000000", "lateness_p99_ms=100"])
    ex = RayExecutor(cfg.ray)
    reports: list[Any] = []
    run = ex.run

    def keep(*args: Any, **kwargs: Any) -> Any:
        out = run(*args, **kwargs)
        reports.extend(out)
        return out

    ex.run = keep  # type: ignore[method-assign]
    outcome = run_benchmark(cfg, ex)
    return json.loads((outcome.run_dir / "result.json").read_text()), reports


def _pcts(report: Any) -> tuple[int, int]:
    lat = report.stats.latency
    assert lat.count > 50, lat.count
    return lat.percentile(0.5), lat.percentile(0.99)


def test_skewed_shard_is_measured_and_latencies_do_not_move(ray_local, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plain, plain_reports = _run(tmp_path / "plain")
    monkeypatch.setenv("RAYBENCH_TEST_WALL_OFFSET_NS", f"1:{OFFSET}")
    skewed, skewed_reports = _run(tmp_path / "skewed")

    for res in (plain, skewed):
        clock = res["clock"]
        assert clock["t0_agreement"] == T0_AGREEMENT
        assert [r["shard"] for r in clock["per_shard"]] == [0, 1]
        for r in clock["per_shard"]:
            assert r["t0_lead_ns"] > 0  # T0 was still ahead when each shard converted it
            assert r["t0_seen_wall_ns"] + r["t0_lead_ns"] == clock["t0_wall_ns"]
            assert r["t0_mono_ns"] + r["mono_wall_offset_ns"] == clock["t0_wall_ns"]  # T0 on its monotonic clock

    base, sk = plain["clock"], skewed["clock"]
    rtt = max(r["rtt_ns"] for r in sk["per_shard"])
    assert base["max_skew_ns"] < 10 * MS, base
    assert 40 * MS - rtt <= sk["max_skew_ns"] <= 60 * MS + rtt, sk
    s0, s1 = sk["per_shard"]
    assert s1["wall_offset_test_ns"] == OFFSET and s0["wall_offset_test_ns"] == 0
    assert abs(s1["skew_ns"] - OFFSET) <= 10 * MS + s1["skew_bound_ns"], s1
    assert abs(s0["skew_ns"]) <= 10 * MS + s0["skew_bound_ns"], s0
    # One host, one CLOCK_MONOTONIC: the fast-clocked shard starts 50 ms early in real time.
    b0, b1 = base["per_shard"]
    assert abs(b1["t0_mono_ns"] - b0["t0_mono_ns"]) < 5 * MS
    assert 45 * MS <= s0["t0_mono_ns"] - s1["t0_mono_ns"] <= 55 * MS, (s0, s1)

    # Latencies are differences of one monotonic clock per shard: the offset does not enter them.
    for a, b in zip(sorted(plain_reports, key=lambda r: r.shard), sorted(skewed_reports, key=lambda r: r.shard),
                    strict=True):
        (p50a, p99a), (p50b, p99b) = _pcts(a), _pcts(b)
        assert 20 * MS <= p50a < 30 * MS and 20 * MS <= p50b < 30 * MS, (a.shard, p50a, p50b)
        assert abs(p50a - p50b) <= 3 * MS, (a.shard, p50a, p50b)
        assert abs(p99a - p99b) <= 25 * MS, (a.shard, p99a, p99b)  # half the offset: noise, not a shift


def test_clock_summary_definitions() -> None:
    skews = [{"skew_ns": 2 * MS, "rtt_ns": 2 * MS, "skew_bound_ns": MS},
             {"skew_ns": -3 * MS, "rtt_ns": 4 * MS, "skew_bound_ns": 2 * MS}, None]
    out = clock_summary(10**18, skews, [None, None, None], ["a", "b", "c"])
    assert out["max_skew_ns"] == 5 * MS  # +2 ms .. -3 ms (the driver, 0, lies between)
    assert out["max_skew_bound_ns"] == 3 * MS
    assert out["per_shard"][2]["skew_ns"] is None
    one = clock_summary(10**18, [{"skew_ns": 4 * MS, "rtt_ns": 0, "skew_bound_ns": 0}], [None], ["a"])
    assert one["max_skew_ns"] == 4 * MS  # one shard still disagrees with the driver that set T0


def test_offsets_parse() -> None:
    assert parse_wall_offsets("1:50000000, 3:-7") == {1: 50_000_000, 3: -7}
    assert parse_wall_offsets("5") == {0: 5}
    assert parse_wall_offsets(None) == {}
    with pytest.raises(ValueError, match="RAYBENCH_TEST_WALL_OFFSET_NS"):
        parse_wall_offsets("1:fast")
