"""Scenario runs on virtual time: exact latencies, verdicts and reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raybench.core.conf import load_settings
from raybench.core.early_stopping import find_min_passing
from raybench.core.plan import build_plan
from raybench.core.scenarios import Server

CONST5 = "sut.params.latency={dist: constant, ms: 5}"


def _plan_count(**kw) -> tuple[int, np.ndarray]:
    s = load_settings(model=None, scenario="Server", mlperf_conf=None, overrides=kw)
    ph = build_plan(Server(), s, 1024, 1024).phases[0]
    return ph.query_count, ph.intended_ns


def test_server_valid_at_sustainable_qps(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=200", "settings.min_duration_ms=10000",
               "settings.server_target_latency_ns=50000000")
    m = out.metrics
    n, intended = _plan_count(server_target_qps=200.0, min_duration_ms=10000, server_target_latency_ns=50_000_000)
    assert m.validity == "VALID", m.invalid_reasons
    assert m.invalid_reasons == []
    assert m.queries_issued == n and m.samples_completed == n
    assert m.latency["min"] == m.latency["p99"] == m.latency["max"] == 5_000_000
    assert m.lateness == {"p50": 0, "p99": 0, "max": 0}
    # Completed samples/s = (n - 1) / completion time of the final query.
    assert m.samples_per_second == pytest.approx((n - 1) / ((intended[-1] + 5_000_000) / 1e9), rel=1e-12)
    assert m.early_stopping["latency"]["met"] is True
    res = json.loads((out.run_dir / "result.json").read_text())
    assert res["validity"] == "VALID" and res["latency_ns"]["p99"] == 5_000_000 and res["shards"] == 1
    for key in ("workload", "sut", "scenario", "mode", "invalid_reasons", "queries_issued", "samples_completed",
                "num_errors", "duration_ns", "samples_per_second", "early_stopping", "lateness_ns", "settings"):
        assert key in res
    assert set(res["latency_ns"]) == {"min", "max", "mean", "p50", "p90", "p95", "p97", "p99", "p99.9"}


def test_server_invalid_when_latency_bound_unmet(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=200", "settings.min_duration_ms=10000",
               "settings.server_target_latency_ns=4000000")
    m = out.metrics
    assert m.validity == "INVALID"
    assert m.perf_constraints_met is False
    assert "latency constraint not met: p99 latency 5.000 ms > target 4 ms" in m.invalid_reasons
    assert m.overlatency_count == m.samples_completed
    summary = (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert "Result is : INVALID" in summary and "Performance constraints satisfied : NO" in summary


def test_too_few_queries_is_invalid_with_queries_still_needed(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=100", "settings.min_duration_ms=2000",
               "settings.min_query_count=100", "settings.server_target_latency_ns=10000000")
    m = out.metrics
    n = m.queries_issued
    assert n < 459
    assert m.early_stopping_met is False
    assert f"early stopping not met: need {459 - n} more queries" in m.invalid_reasons
    assert m.validity == "INVALID"
    summary = (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert f"Would need to run at least {459 - n} more queries" in summary


def test_offline_valid_and_samples_per_second(vrun) -> None:
    out = vrun("scenario=Offline", CONST5, "sut.params.max_batch=10", "sut.params.max_inflight=2",
               "settings.offline_expected_qps=4000", "settings.min_duration_ms=1000", "workload.params.count=64")
    m = out.metrics
    # 4400 samples in batches of 10, 2 in flight, 5 ms each: 220 rounds -> 1.1 s.
    assert m.samples_completed == 4400 and m.queries_issued == 1
    assert m.latency["max"] == 1_100_000_000
    assert m.samples_per_second == pytest.approx(4000.0)
    assert m.validity == "VALID"


def test_singlestream_early_stopping_estimate(vrun) -> None:
    out = vrun("scenario=SingleStream", "sut.params.latency={dist: uniform, low_ms: 1, high_ms: 3}",
               "settings.min_duration_ms=1000", "settings.min_query_count=100")
    m = out.metrics
    assert m.validity == "VALID", m.invalid_reasons
    es = m.early_stopping["latency"]
    assert es["met"] is True and es["estimate_ns"] >= m.latency["p90"]
    assert m.final_query_issued_s >= 1.0
    summary = (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert f" * Early stopping 90.0th percentile estimate: {es['estimate_ns']}" in summary
    vals = {}
    for line in (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines():
        o = json.loads(line[len(":::MLLOG "):])
        vals[o["key"]] = o["value"]
    assert vals["early_stopping_latency_ss"] == es["estimate_ns"]
    # Fewer than 662 queries: no p99 estimate (LoadGen says so and logs 0).
    assert m.queries_issued < 662 and vals["early_stopping_latency_ms"] == 0
    assert "Not enough queries processed for 99.0th percentile" in summary


def test_multistream_query_latency_is_max_of_its_samples(vrun) -> None:
    out = vrun("scenario=MultiStream", CONST5, "settings.min_duration_ms=1000", "settings.min_query_count=662",
               "settings.multi_stream_expected_latency_ns=5000000")
    m = out.metrics
    assert m.samples_completed == 8 * m.queries_issued
    assert m.query_latency["p99"] == 5_000_000
    assert m.validity == "VALID", m.invalid_reasons
    assert m.early_stopping["latency"]["estimate_ns"] == 5_000_000


def test_sut_exceptions_are_recorded_and_invalidate(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "sut.params.raise_after=50", "settings.server_target_qps=100",
               "settings.min_duration_ms=5000")
    m = out.metrics
    assert m.num_errors == m.samples_issued - 50
    assert m.errors == {"RuntimeError: fake SUT failure injected after 50 queries": m.num_errors}
    assert any(r.startswith(f"{m.num_errors} of {m.samples_issued} samples failed: RuntimeError") for r in m.invalid_reasons)
    assert m.validity == "INVALID"


def test_unresponsive_sut_ends_by_timeout_and_keeps_measurements(vrun) -> None:
    out = vrun("scenario=Server", "records=all", CONST5, "sut.params.hang_after=20", "settings.server_target_qps=100",
               "settings.min_duration_ms=60000", "query_timeout_s=2")
    m = out.metrics
    assert m.validity == "INVALID"
    assert m.samples_completed == 20
    assert any("timeout: no response within 2s" in r for r in m.invalid_reasons)
    assert m.duration_ns < 5_000_000_000  # stopped issuing after the first timeout, not at 60 s
    rec = np.load(out.run_dir / "records.npz")
    assert int((rec["shard0/completed_ns"] > 0).sum()) >= 20


def test_max_duration_deadline_cancels_outstanding(vrun) -> None:
    out = vrun("scenario=Server", "sut.params.latency={dist: constant, ms: 10000}", "settings.server_target_qps=50",
               "settings.min_duration_ms=3000", "settings.max_duration_ms=1000", "deadline_grace_s=1", "query_timeout_s=100")
    m = out.metrics
    assert m.validity == "INVALID"
    assert any("deadline of 2.0s reached" in r for r in m.invalid_reasons)
    assert m.samples_completed == 0 and m.num_errors == m.samples_issued


def test_token_latencies_ttft_tpot(vrun) -> None:
    out = vrun("scenario=Server", "sut.params.tokens={n: 16, ttft_ms: 20, tpot_ms: 5}", "settings.server_target_qps=50",
               "settings.min_duration_ms=10000", "settings.use_token_latencies=true",
               "settings.server_ttft_latency=100000000", "settings.server_tpot_latency=10000000")
    m = out.metrics
    assert m.ttft["p99"] == 20_000_000 and m.tpot["p99"] == 5_000_000
    assert m.latency["p50"] == 20_000_000 + 15 * 5_000_000
    assert m.total_tokens == 16 * m.samples_completed
    assert m.itl["p50"] == 5_000_000
    assert m.validity == "VALID", m.invalid_reasons
    detail = (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines()
    keys = {json.loads(line[len(":::MLLOG "):])["key"] for line in detail}
    assert {"result_first_token_99.00_percentile_latency_ns", "result_time_per_output_token_99.00_percentile_ns",
            "early_stopping_ttft_result", "early_stopping_tpot_result"} <= keys


def test_tpot_bound_makes_token_run_invalid(vrun) -> None:
    out = vrun("scenario=Server", "sut.params.tokens={n: 8, ttft_ms: 10, tpot_ms: 50}", "settings.server_target_qps=20",
               "settings.min_duration_ms=5000", "settings.use_token_latencies=true",
               "settings.server_ttft_latency=100000000", "settings.server_tpot_latency=30000000")
    assert "TPOT constraint not met: p99 TPOT 50.000 ms > 30 ms" in out.metrics.invalid_reasons


def test_accuracy_mode_logs_every_sample_and_scores(vrun) -> None:
    out = vrun("scenario=Offline", "mode=AccuracyOnly", "workload.params.count=200", "workload.params.performance_count=64")
    m = out.metrics
    assert m.validity == "VALID", m.invalid_reasons
    log = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in log) == list(range(200))
    assert bytes.fromhex(log[0]["data"]).startswith(f"{log[0]['qsl_idx']:08d}|".encode())
    assert out.accuracy is not None and out.accuracy.metrics["exact_match"] == 1.0
    assert (out.run_dir / "accuracy.txt").read_text().startswith("exact_match=1.000000 count=200")


def test_closed_loop_concurrency(vrun) -> None:
    out = vrun("scenario=Concurrency", CONST5, "settings.target_concurrency=4", "settings.min_duration_ms=1000",
               "settings.min_query_count=10")
    m = out.metrics
    # 4 streams, each a query per 5 ms, for 1 s (the query issued at t=1.0 s is the last).
    assert m.samples_completed == 4 * 201
    assert m.validity == "VALID", m.invalid_reasons


def test_detail_log_lines_are_json_and_first_is_mllog(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=100", "settings.min_duration_ms=5000")
    lines = (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines()
    assert lines[0].startswith(":::MLLOG ")
    objs = [json.loads(line[len(":::MLLOG "):]) for line in lines]
    assert all(o["metadata"]["is_error"] is False for o in objs)
    keys = [o["key"] for o in objs]
    for k in ("loadgen_version", "test_datetime", "sut_name", "qsl_reported_total_count", "effective_scenario",
              "effective_min_duration_ms", "generated_query_count", "result_validity", "early_stopping_met",
              "result_completed_samples_per_sec", "result_99.00_percentile_latency_ns", "num_errors"):
        assert k in keys
    vals = {o["key"]: o["value"] for o in objs}
    assert vals["effective_schedule_rng_seed"] == 16159082839903944936
    assert vals["result_99.00_percentile_latency_ns"] == 5_000_000


def test_seeds_are_read_only_from_mlperf_conf_round(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=100", "settings.min_duration_ms=1000", "round=v6.0")
    vals = {}
    for line in (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines():
        o = json.loads(line[len(":::MLLOG "):])
        vals[o["key"]] = o["value"]
    assert vals["effective_qsl_rng_seed"] == 2465351861681999779


def test_early_stopping_floor_constant() -> None:
    assert find_min_passing(0, 0.99) == 459


def test_timeline_counts_are_cumulative_and_end_at_the_totals(vrun) -> None:
    out = vrun("scenario=Server", CONST5, "settings.server_target_qps=100", "settings.min_duration_ms=5000", shards=2)
    tl = json.loads((out.run_dir / "timeline.json").read_text())
    issued = [row["issued"] for row in tl]
    assert issued == sorted(issued)
    assert tl[-1]["issued"] == out.metrics.samples_issued and tl[-1]["completed"] == out.metrics.samples_completed
    assert sum(row["window_completed"] for row in tl) == sum(s["queries_issued"] for s in out.metrics.shards)


def test_secret_parameters_are_masked_but_token_counts_are_not(vrun) -> None:
    from raybench.results import mask_secrets as _mask_secrets

    masked = _mask_secrets({"api_key": "sk-1", "auth_token": "t", "max_tokens": 128, "tokens": {"n": 4},
                            "api_key_env": "OPENAI_API_KEY", "nested": {"password": "p"}})
    assert masked == {"api_key": "***", "auth_token": "***", "max_tokens": 128, "tokens": {"n": 4},
                      "api_key_env": "OPENAI_API_KEY", "nested": {"password": "***"}}
