"""``mlperf_log_summary.txt`` and ``mlperf_log_detail.txt`` in LoadGen's layouts.

The detail log is one ``:::MLLOG {json}`` line per key (the submission checker requires the
first line to start with ``:::MLLOG`` and every line to be strict JSON with ``key``, ``value``,
``metadata.is_error`` and ``metadata.is_warning``). Keys and their order follow LoadGen 6.0:
version, test info, ``requested_*``, ``effective_*``, generated queries, then results.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from raybench import __version__
from raybench.core.logs.atomic import atomic_write_lines, to_jsonable
from raybench.core.metrics import RunMetrics
from raybench.core.plan import Plan
from raybench.core.settings import to_effective_dict, to_requested_dict
from raybench.core.stats import PERCENTILE_GRID

__all__ = ["detail_lines", "summary_lines", "write_detail", "write_summary", "LOADGEN_COMPAT_VERSION"]

#: The LoadGen version whose log layout these writers follow.
LOADGEN_COMPAT_VERSION = "6.0.17"


def _pct_name(p: float) -> str:
    return f"{p * 100:.2f}"


def _num(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return v


class _Detail:
    def __init__(self, origin_ns: int) -> None:
        self.lines: list[str] = []
        self.origin_ns = origin_ns
        self.pid = os.getpid()
        self.tid = threading.get_ident() % 2**31

    def log(self, key: str, value: Any, *, t_ns: int | None = None, event: str = "POINT_IN_TIME",
            is_error: bool = False, is_warning: bool = False) -> None:
        obj = {
            "key": key,
            "value": _num(to_jsonable(value)),
            "time_ms": round(((t_ns if t_ns is not None else self.origin_ns) - self.origin_ns) / 1e6, 6),
            "namespace": "mlperf::logging",
            "event_type": event,
            "metadata": {
                "is_error": is_error,
                "is_warning": is_warning,
                "file": "raybench",
                "line_no": len(self.lines) + 1,
                "pid": self.pid,
                "tid": self.tid,
            },
        }
        self.lines.append(":::MLLOG " + json.dumps(obj, allow_nan=False))


def detail_lines(
    plan: Plan,
    m: RunMetrics,
    *,
    sut_name: str,
    qsl_name: str,
    qsl_total_count: int,
    qsl_performance_count: int,
    test_datetime: _dt.datetime,
    shards: int,
    end_time_ns: int | None = None,
) -> list[str]:
    """The lines of ``mlperf_log_detail.txt`` for one run."""
    eff = plan.effective
    s = plan.settings
    d = _Detail(0)
    d.log("loadgen_version", f"{LOADGEN_COMPAT_VERSION} (raybench {__version__})")
    d.log("loadgen_build_date_local", test_datetime.astimezone().isoformat())
    d.log("loadgen_build_date_utc", test_datetime.astimezone(_dt.UTC).isoformat())
    d.log("loadgen_git_commit_date", "")
    d.log("loadgen_git_log_message", "")
    d.log("loadgen_git_status_message", "")
    d.log("loadgen_file_sha1", {})
    d.log("test_datetime", test_datetime.strftime("%Y-%m-%dT%H:%M:%SZ"))
    d.log("sut_name", sut_name)
    d.log("get_sut_name_duration_ns", 0)
    d.log("qsl_name", qsl_name)
    d.log("qsl_reported_total_count", qsl_total_count)
    d.log("qsl_reported_performance_count", qsl_performance_count)
    for k, v in to_requested_dict(s).items():
        d.log(k, v)
    spq = plan.phases[0].samples_per_query if plan.phases else eff.samples_per_query
    effd = to_effective_dict(
        s,
        qsl_performance_sample_count=qsl_performance_count,
        qsl_total_sample_count=qsl_total_count,
        samples_per_query=spq,
        target_duration_ms=eff.target_duration_ms,
        min_query_count=eff.min_query_count,
    )
    for k, v in effd.items():
        d.log(k, v)
    d.log("raybench_shards", shards)
    d.log("generic_message", "Starting performance mode" if eff.mode != "AccuracyOnly" else "Starting accuracy mode")
    for phase in plan.phases[:1]:
        d.log("loaded_qsl_set", [int(x) for x in phase.loaded_set[:4096]])
    d.log("generated_query_count", plan.query_count if eff.scenario != "Offline" else len(plan.phases))
    d.log("generated_samples_per_query", spq)
    d.log("generated_query_duration", plan.phases[0].generated_duration_ns if plan.phases else 0)
    t_end = end_time_ns if end_time_ns is not None else m.duration_ns
    d.log("power_begin", test_datetime.strftime("%m-%d-%Y %H:%M:%S.000"), event="INTERVAL_START")
    end_dt = test_datetime + _dt.timedelta(microseconds=t_end / 1000)
    d.log("power_end", end_dt.strftime("%m-%d-%Y %H:%M:%S.000"), t_ns=t_end, event="INTERVAL_END")
    d.log("result_validity", m.validity, t_ns=t_end)
    if eff.scenario == "Server":
        d.log("result_perf_constraints_met", m.perf_constraints_met, t_ns=t_end)
    d.log("result_min_duration_met", m.min_duration_met, t_ns=t_end)
    d.log("result_min_queries_met", m.min_queries_met, t_ns=t_end)
    d.log("early_stopping_met", m.early_stopping_met, t_ns=t_end)
    if m.validity != "VALID":
        d.log("result_invalid_reason", " ".join(m.recommendations + m.invalid_reasons), t_ns=t_end)
    named = dict(m.early_stopping_results)
    if s.use_token_latencies and eff.scenario == "Server":
        for nm in ("ttft", "tpot"):
            if nm in named:
                d.log(f"early_stopping_{nm}_result", " ".join(named[nm].lines), t_ns=t_end)
    elif "latency" in named:
        d.log("early_stopping_result", " ".join(named["latency"].lines), t_ns=t_end)
    d.log("result_query_count", m.queries_issued, t_ns=t_end)
    if eff.scenario == "Server":
        d.log("result_overlatency_query_count", m.overlatency_count, t_ns=t_end)
    lat = m.latency
    sc = eff.scenario
    if sc == "SingleStream":
        d.log("result_qps_with_loadgen_overhead", m.samples_per_second, t_ns=t_end)
        mean_s = lat.get("mean", 0) / 1e9
        d.log("result_qps_without_loadgen_overhead", (1.0 / mean_s) if mean_s else 0.0, t_ns=t_end)
        d.log("early_stopping_latency_ss", _es_estimate(named.get("latency")), t_ns=t_end)
        ms = named.get("latency")
        d.log("early_stopping_latency_ms", int(ms.multistream_estimate_ns or 0) if ms is not None else 0, t_ns=t_end)
    elif sc == "MultiStream":
        q = m.query_latency
        d.log("result_min_query_latency_ns", q.get("min", 0), t_ns=t_end)
        d.log("result_max_query_latency_ns", q.get("max", 0), t_ns=t_end)
        d.log("result_mean_query_latency_ns", q.get("mean", 0), t_ns=t_end)
        for p in PERCENTILE_GRID:
            d.log(f"result_{_pct_name(p)}_percentile_per_query_latency_ns", q.get(f"p{p * 100:g}", 0), t_ns=t_end)
        d.log("early_stopping_latency_ms", _es_estimate(named.get("latency")), t_ns=t_end)
    elif sc in ("Server", "Concurrency"):
        d.log("result_scheduled_samples_per_sec", m.scheduled_samples_per_second or 0.0, t_ns=t_end)
        d.log("result_completed_samples_per_sec", m.samples_per_second, t_ns=t_end)
    elif sc == "Offline":
        d.log("result_samples_per_second", m.samples_per_second, t_ns=t_end)
    d.log("result_min_latency_ns", lat.get("min", 0), t_ns=t_end)
    d.log("result_max_latency_ns", lat.get("max", 0), t_ns=t_end)
    d.log("result_mean_latency_ns", lat.get("mean", 0), t_ns=t_end)
    for p in PERCENTILE_GRID:
        d.log(f"result_{_pct_name(p)}_percentile_latency_ns", lat.get(f"p{p * 100:g}", 0), t_ns=t_end)
    if s.use_token_latencies:
        if sc != "Offline" and m.ttft:
            d.log("result_first_token_min_latency_ns", m.ttft["min"], t_ns=t_end)
            d.log("result_first_token_max_latency_ns", m.ttft["max"], t_ns=t_end)
            d.log("result_first_token_mean_latency_ns", m.ttft["mean"], t_ns=t_end)
            for p in PERCENTILE_GRID:
                d.log(f"result_first_token_{_pct_name(p)}_percentile_latency_ns", m.ttft[f"p{p * 100:g}"], t_ns=t_end)
            tps_w = m.total_tokens / m.final_query_issued_s if m.final_query_issued_s else 0.0
            mean_s = lat.get("mean", 0) / 1e9
            tps_wo = m.total_tokens / (mean_s * m.samples_completed) if mean_s and m.samples_completed else 0.0
            d.log("result_token_throughput_with_loadgen_overhead", tps_w, t_ns=t_end)
            d.log("result_token_throughput", tps_wo, t_ns=t_end)
            if m.tpot:
                for p in PERCENTILE_GRID:
                    d.log(f"result_time_per_output_token_{_pct_name(p)}_percentile_ns", m.tpot[f"p{p * 100:g}"], t_ns=t_end)
                d.log("result_time_to_output_token_min", m.tpot["min"], t_ns=t_end)
                d.log("result_time_to_output_token_max", m.tpot["max"], t_ns=t_end)
                d.log("result_time_to_output_token_mean", m.tpot["mean"], t_ns=t_end)
            if sc == "Server":
                d.log("result_completed_tokens_per_second", m.tokens_per_second or 0.0, t_ns=t_end)
        elif sc == "Offline":
            d.log("result_tokens_per_second", m.tokens_per_second or 0.0, t_ns=t_end)
    d.log("num_errors", 0, t_ns=t_end)
    d.log("raybench_failed_samples", m.num_errors, t_ns=t_end)
    return d.lines


def _es_estimate(r: Any) -> int:
    return int(r.estimate_ns) if r is not None and r.estimate_ns is not None else 0


def summary_lines(plan: Plan, m: RunMetrics, *, sut_name: str, qsl_performance_count: int) -> list[str]:
    """The lines of ``mlperf_log_summary.txt`` (LoadGen's text layout)."""
    eff = plan.effective
    s = plan.settings
    sc = eff.scenario
    lat = m.latency
    bar = "================================================"
    out = [bar, "MLPerf Results Summary", bar, f"SUT name : {sut_name}", f"Scenario : {sc}", f"Mode     : {eff.mode}"]
    p = eff.target_latency_percentile
    named = dict(m.early_stopping_results)
    if sc == "SingleStream":
        out.append(f"{p * 100:.0f}th percentile latency (ns) : {lat.get(f'p{p * 100:g}', _pget(m, p))}")
    elif sc == "MultiStream":
        out.append(f"{p * 100:.0f}th percentile latency (ns) : {_qpget(m, p)}")
    elif sc in ("Server", "Concurrency"):
        out.append(f"Completed samples per second    : {m.samples_per_second:.2f}")
        if s.use_token_latencies and m.tokens_per_second:
            out.append(f"Completed tokens per second: {m.tokens_per_second:.2f}")
    elif sc == "Offline":
        out.append(f"Samples per second: {m.samples_per_second:g}")
        if s.use_token_latencies and m.tokens_per_second:
            out.append(f"Tokens per second: {m.tokens_per_second:g}")
    out.append(f"Result is : {m.validity}")
    if sc == "Server":
        out.append(f"  Performance constraints satisfied : {'Yes' if m.perf_constraints_met else 'NO'}")
    out.append(f"  Min duration satisfied : {'Yes' if m.min_duration_met else 'NO'}")
    out.append(f"  Min queries satisfied : {'Yes' if m.min_queries_met else 'NO'}")
    out.append(f"  Early stopping satisfied: {'Yes' if m.early_stopping_met else 'NO'}")
    if m.validity != "VALID":
        out.append("Recommendations:")
        for r in m.recommendations:
            out.append(f" * {r}")
        for r in m.invalid_reasons:
            out.append(f" * {r}")
    if sc in ("SingleStream", "Server", "MultiStream"):
        if s.use_token_latencies and sc == "Server":
            for nm, title in (("ttft", "TTFT Early Stopping Result:"), ("tpot", "TPOT Early Stopping Result:")):
                if nm in named:
                    out.append(title)
                    out.extend(named[nm].lines)
        elif "latency" in named:
            out.append("Early Stopping Result:")
            out.extend(named["latency"].lines)
    out += ["", bar, "Additional Stats", bar]
    if sc == "SingleStream":
        mean_s = lat.get("mean", 0) / 1e9
        out.append(f"QPS w/ loadgen overhead         : {m.samples_per_second:.2f}")
        out.append(f"QPS w/o loadgen overhead        : {(1 / mean_s) if mean_s else 0.0:.2f}")
        out.append("")
    elif sc in ("Server", "Concurrency"):
        out.append(f"Scheduled samples per second : {m.scheduled_samples_per_second or 0.0:.2f}")
        out.append("")
    elif sc == "MultiStream":
        q = m.query_latency
        out.append("Per-query latency:  ")
        out.append(f"Min latency (ns)                : {q.get('min', 0)}")
        out.append(f"Max latency (ns)                : {q.get('max', 0)}")
        out.append(f"Mean latency (ns)               : {q.get('mean', 0)}")
        for pp in PERCENTILE_GRID:
            out.append(f"{_pct_name(pp)} percentile latency (ns)   : {q.get(f'p{pp * 100:g}', 0)}")
    if sc != "MultiStream":
        out.append(f"Min latency (ns)                : {lat.get('min', 0)}")
        out.append(f"Max latency (ns)                : {lat.get('max', 0)}")
        out.append(f"Mean latency (ns)               : {lat.get('mean', 0)}")
        for pp in PERCENTILE_GRID:
            out.append(f"{_pct_name(pp)} percentile latency (ns)   : {lat.get(f'p{pp * 100:g}', 0)}")
    if s.use_token_latencies and sc != "Offline" and m.ttft:
        out.append("")
        out.append(f"Min First Token latency (ns)                : {m.ttft['min']}")
        out.append(f"Max First Token latency (ns)                : {m.ttft['max']}")
        out.append(f"Mean First Token latency (ns)               : {m.ttft['mean']}")
        for pp in PERCENTILE_GRID:
            out.append(f"{_pct_name(pp)} percentile first token latency (ns)   : {m.ttft[f'p{pp * 100:g}']}")
        if m.tpot:
            out.append("")
            out.append(f"Min Time to Output Token (ns)                : {m.tpot['min']}")
            out.append(f"Max Time to Output Token (ns)                : {m.tpot['max']}")
            out.append(f"Mean Time to Output Token (ns)               : {m.tpot['mean']}")
            for pp in PERCENTILE_GRID:
                out.append(f"{_pct_name(pp)} percentile time to output token (ns)   : {m.tpot[f'p{pp * 100:g}']}")
    out.append("")
    out.append(f"Send lateness p50 / p99 / max (ns): {m.lateness['p50']} / {m.lateness['p99']} / {m.lateness['max']}")
    out += ["", bar, "Test Parameters Used", bar]
    out.append(f"samples_per_query : {plan.phases[0].samples_per_query if plan.phases else eff.samples_per_query}")
    out.append(f"target_qps : {eff.target_qps:g}")
    if s.use_token_latencies:
        out.append(f"ttft_latency (ns): {s.server_ttft_latency}")
        out.append(f"tpot_latency (ns): {s.server_tpot_latency}")
    else:
        out.append(f"target_latency (ns): {eff.target_latency_ns}")
    out.append(f"max_async_queries : {eff.max_async_queries}")
    out.append(f"min_duration (ms): {eff.min_duration_ms}")
    out.append(f"max_duration (ms): {eff.max_duration_ms}")
    out.append(f"min_query_count : {eff.min_query_count}")
    out.append(f"max_query_count : {eff.max_query_count}")
    out.append(f"qsl_rng_seed : {s.qsl_rng_seed}")
    out.append(f"sample_index_rng_seed : {s.sample_index_rng_seed}")
    out.append(f"schedule_rng_seed : {s.schedule_rng_seed}")
    out.append(f"accuracy_log_rng_seed : {s.accuracy_log_rng_seed}")
    out.append(f"accuracy_log_probability : {s.accuracy_log_probability:g}")
    out.append(f"accuracy_log_sampling_target : {s.accuracy_log_sampling_target}")
    out.append(f"print_timestamps : {int(s.print_timestamps)}")
    out.append(f"performance_issue_unique : {int(s.performance_issue_unique)}")
    out.append(f"performance_issue_same : {int(s.performance_issue_same)}")
    out.append(f"performance_issue_same_index : {s.performance_issue_same_index}")
    out.append(f"performance_sample_count : {eff.performance_sample_count}")
    if sc == "Concurrency":
        out.append(f"target_concurrency : {eff.concurrency}")
    out.append("")
    out.append("No warnings encountered during test.")
    out.append("")
    out.append("No errors encountered during test." if not m.num_errors else f"{m.num_errors} samples failed during test.")
    return out


def _pget(m: RunMetrics, p: float) -> int:
    return int(m.latency.get(f"p{p * 100:g}", 0))


def _qpget(m: RunMetrics, p: float) -> int:
    return int(m.query_latency.get(f"p{p * 100:g}", 0))


def write_detail(path: str | Path, lines: list[str]) -> Path:
    return atomic_write_lines(path, lines)


def write_summary(path: str | Path, lines: list[str]) -> Path:
    return atomic_write_lines(path, lines)
