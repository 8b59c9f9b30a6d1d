"""Server load shapes (scenario.arrival): exact schedules, distributions, shard invariance, flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from raybench.core.conf import load_settings
from raybench.core.plan import build_plan, partition, poisson_schedule, rng
from raybench.core.scenarios import ScenarioConfig, Server
from raybench.core.settings import TestSettings

SEED = 16159082839903944936


def settings(**kw) -> TestSettings:
    return load_settings(model=None, scenario="Server", mlperf_conf="none",
                         overrides={"schedule_rng_seed": SEED, **kw})


def server(arrival: dict | None = None) -> Server:
    return TypeAdapter(ScenarioConfig).validate_python({"name": "Server", **({"arrival": arrival} if arrival else {})})


def intended(arrival: dict | None, total: int = 64, arrival_ns=None, **kw) -> np.ndarray:
    plan = build_plan(server(arrival), settings(**kw), total, total, arrival_ns=arrival_ns,
                      issue_order=np.arange(total) if arrival_ns is not None else None)
    return plan.phases[0].intended_ns


def test_default_and_explicit_poisson_are_loadgens_schedule_bit_for_bit() -> None:
    kw = dict(server_target_qps=50.0, min_duration_ms=2000, min_query_count=10)
    ref, gen = poisson_schedule(50.0, SEED, 0, 2_000_000_000, 10)
    plan = build_plan(Server(), settings(**kw), 64, 64)
    assert np.array_equal(plan.phases[0].intended_ns, ref) and plan.phases[0].generated_duration_ns == gen
    assert plan.meta == {}  # the default adds nothing to result.json or the logs
    assert Server().model_dump(exclude_none=True) == {"name": "Server"}
    assert np.array_equal(intended({"kind": "poisson"}, **kw), ref)
    # gamma with burstiness 1 is Poisson: the same schedule, and still MLPerf's
    g1 = build_plan(server({"kind": "gamma", "burstiness": 1.0}), settings(**kw), 64, 64)
    assert np.array_equal(g1.phases[0].intended_ns, ref) and g1.meta == {}


def test_constant_rate_exact_times() -> None:
    # period 1/8 s; queries until the previous one reaches min_duration 1 s: 0, 0.125, ..., 1.0 s
    t = intended({"kind": "constant"}, server_target_qps=8.0, min_duration_ms=1000, min_query_count=1)
    assert t.tolist() == [k * 125_000_000 for k in range(9)]
    # min_query_count is a floor
    assert intended({"kind": "constant"}, server_target_qps=8.0, min_duration_ms=1000, min_query_count=20).shape[0] == 20


def test_gamma_exact_times_for_the_seed_and_mean_and_cv() -> None:
    qps, b = 100.0, 0.25
    t = intended({"kind": "gamma", "burstiness": b}, server_target_qps=qps, min_duration_ms=1000, min_query_count=1)
    # the first chunk's gaps, drawn independently from the same seeded stream
    gaps = np.floor(rng(SEED, 0).gamma(b, 1 / (qps * b), size=1024) * 1e9).astype(np.int64)
    expect = np.concatenate([[0], np.cumsum(gaps)])
    k = int(np.nonzero(expect >= 1_000_000_000)[0][0]) + 1  # stop after the first query at/after 1 s
    assert t.tolist() == expect[:k].tolist()
    # large n: mean gap 1/qps within 2 %, squared CV = 1/burstiness within 10 %
    big = intended({"kind": "gamma", "burstiness": b}, server_target_qps=1000.0, min_duration_ms=200_000,
                   min_query_count=1)
    g = np.diff(big) / 1e9
    assert big.shape[0] > 190_000
    assert abs(g.mean() - 1e-3) / 1e-3 < 0.02
    assert abs(g.var() / g.mean() ** 2 - 1 / b) / (1 / b) < 0.10


def test_deterministic_ramp_exact_times() -> None:
    # rate 0 -> 10 qps over 2 s: Λ(t) = 2.5 t² on the ramp (Λ(2) = 10), then 10 qps.
    # query k at Λ⁻¹(k) = sqrt(k / 2.5) s for k <= 10, then 2 + (k - 10)/10 s.
    t = intended({"kind": "ramp", "start_qps": 0.0, "duration_ms": 2000, "random": False}, server_target_qps=10.0,
                 min_duration_ms=3000, min_query_count=1)
    expect = [math.floor(math.sqrt(k / 2.5) * 1e9) for k in range(11)] + \
             [math.floor((2 + (k - 10) / 10) * 1e9) for k in range(11, 21)]
    assert t.tolist() == pytest.approx(expect, abs=1)  # float rounding of the closed form only
    assert t.shape[0] == 21 and t[-1] == 3_000_000_000
    # the ramp lasts min_duration_ms by default: 0 -> 10 over 3 s, Λ(3) = 15, so 16 queries
    d = intended({"kind": "ramp", "random": False}, server_target_qps=10.0, min_duration_ms=3000, min_query_count=1)
    assert d.shape[0] == 16 and d[-1] == 3_000_000_000 and d[1] == math.floor(math.sqrt(0.6) * 1e9)
    # explicit end rate and ramp duration, ramp down 20 -> 10 over 1 s: Λ(1) = 15
    down = intended({"kind": "ramp", "start_qps": 20.0, "end_qps": 10.0, "duration_ms": 1000, "random": False},
                    server_target_qps=99.0, min_duration_ms=1000, min_query_count=1)
    assert down.shape[0] == 16 and down[-1] == 1_000_000_000
    assert down[1] == math.floor(2 / (20 + math.sqrt(400 - 20)) * 1e9)


def test_random_ramp_count_follows_the_integrated_rate() -> None:
    # 0 -> 200 qps over 100 s: expected 10,000 arrivals by 100 s (sd 100): within 4 sd
    t = intended({"kind": "ramp", "start_qps": 0.0, "end_qps": 200.0}, server_target_qps=1.0,
                 min_duration_ms=100_000, min_query_count=1)
    assert abs(t.shape[0] - 10_000) < 400
    first, last = np.count_nonzero(t < 50e9), np.count_nonzero(t >= 50e9)  # Λ(50) = 2,500
    assert abs(first - 2_500) < 200 and abs(last - 7_500) < 350
    assert np.all(np.diff(t) >= 0)


def test_trace_schedule_is_timestamps_over_speedup_every_entry_once() -> None:
    ts_ms = [0, 10, 10, 250, 1001, 3000]
    ts_ns = np.array(ts_ms, dtype=np.int64) * 1_000_000
    t = intended({"kind": "trace", "speedup": 4.0}, total=6, arrival_ns=ts_ns, server_target_qps=1.0,
                 min_duration_ms=0, min_query_count=1)
    assert t.tolist() == [m * 1_000_000 // 4 for m in ts_ms] == [0, 2_500_000, 2_500_000, 62_500_000, 250_250_000,
                                                                750_000_000]
    plan = build_plan(server({"kind": "trace"}), settings(min_duration_ms=0), 6, 6, issue_order=np.arange(6),
                      arrival_ns=ts_ns)
    assert plan.phases[0].samples.tolist() == [0, 1, 2, 3, 4, 5]
    assert plan.phases[0].intended_ns.tolist() == ts_ns.tolist()
    assert plan.meta["arrival"] == {"kind": "trace", "speedup": 1.0, "mlperf": False,
                                    "note": "non-MLPerf load shape: not LoadGen's Poisson Server schedule"}
    with pytest.raises(ValueError, match="scenario.arrival: kind 'trace' needs a dataset with timestamps"):
        build_plan(server({"kind": "trace"}), settings(), 6, 6)


@pytest.mark.parametrize("arrival", [{"kind": "constant"}, {"kind": "gamma", "burstiness": 0.5},
                                     {"kind": "ramp", "start_qps": 10.0}, {"kind": "trace", "speedup": 2.0}])
def test_every_shape_is_shard_count_invariant(arrival: dict) -> None:
    kw = settings(server_target_qps=200.0, min_duration_ms=2000)
    trace = np.cumsum(rng(7).integers(0, 20_000_000, size=300)) if arrival["kind"] == "trace" else None
    order = np.arange(300) if trace is not None else None
    plan = build_plan(server(arrival), kw, 300, 300, issue_order=order, arrival_ns=trace)
    ph = plan.phases[0]
    assert ph.query_count > 100
    for shards in (1, 2, 3):
        rows = []
        for sl in partition(build_plan(server(arrival), kw, 300, 300, issue_order=order, arrival_ns=trace), shards):
            p = sl.phases[0]
            rows += zip(p.query_ids.tolist(), p.intended_ns.tolist(), p.samples.tolist(), strict=True)
        rows.sort()
        assert [r[0] for r in rows] == list(range(ph.query_count))
        assert [r[1] for r in rows] == ph.intended_ns.tolist()
        assert [r[2] for r in rows] == ph.samples.tolist()


def test_bad_arrival_blocks_are_refused_by_field() -> None:
    with pytest.raises(ValidationError, match="burstiness"):
        server({"kind": "gamma", "burstiness": 0})
    with pytest.raises(ValidationError, match="speedup"):
        server({"kind": "trace", "speedup": -1})
    with pytest.raises(ValidationError, match="kind"):
        server({"kind": "zipf"})
    with pytest.raises(ValueError, match="scenario.arrival.duration_ms"):
        intended({"kind": "ramp"}, server_target_qps=5.0, min_duration_ms=0, min_query_count=3)


def test_non_poisson_run_is_flagged_in_result_json_and_warnings(tmp_path) -> None:
    from raybench.config import load_run_config
    from raybench.run import prepare_run

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", "scenario.arrival.kind=gamma",
                                 "scenario.arrival.burstiness=0.5", "settings.server_target_qps=10",
                                 f"out={tmp_path}"])
    prep = prepare_run(cfg)
    assert prep.plan.meta["arrival"]["kind"] == "gamma" and prep.plan.meta["arrival"]["mlperf"] is False
    assert any("not MLPerf-compliant" in w for w in prep.warnings)
    default = prepare_run(load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server",
                                                 f"out={tmp_path}"]))
    assert default.plan.meta == {} and not any("arrival" in w for w in default.warnings)


def test_non_poisson_run_is_flagged_in_the_mlperf_logs(tmp_path) -> None:
    import json

    from raybench.config import load_run_config
    from raybench.core.clock import VirtualClock
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    base = ["workload=synthetic", "sut=fake", "scenario=Server", "mlperf_conf=none", "settings.server_target_qps=50",
            "settings.min_duration_ms=200", f"out={tmp_path}"]
    ramp = run_benchmark(load_run_config(None, [*base, "scenario.arrival.kind=ramp", "run_dir=" + str(tmp_path / "r")]),
                         InProcessExecutor(VirtualClock()))
    lines = [json.loads(x[len(":::MLLOG "):]) for x in (ramp.run_dir / "mlperf_log_detail.txt").read_text().splitlines()]
    [flag] = [x for x in lines if x["key"] == "raybench_load_shape"]
    assert flag["value"]["kind"] == "ramp" and flag["metadata"]["is_warning"] is True
    assert "1 warning encountered" in (ramp.run_dir / "mlperf_log_summary.txt").read_text()
    poisson = run_benchmark(load_run_config(None, [*base, "run_dir=" + str(tmp_path / "p")]),
                            InProcessExecutor(VirtualClock()))
    assert "raybench_load_shape" not in (poisson.run_dir / "mlperf_log_detail.txt").read_text()
    assert "No warnings encountered during test." in (poisson.run_dir / "mlperf_log_summary.txt").read_text()
    assert "load_shape" not in json.loads((poisson.run_dir / "result.json").read_text())
