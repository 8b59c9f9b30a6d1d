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
from typing import Any

from raybench import __version__
from raybench.core.conf import AUDIT_CONFIG_WARNING
from raybench.core.logs.atomic import to_jsonable
from raybench.core.metrics import RunMetrics
from raybench.core.plan import Plan
from raybench.core.stats import PERCENTILE_GRID

__all__ = ["LOADGEN_COMPAT_VERSION", "detail_lines", "summary_lines"]

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
    """The lines of ``mlperf_log_detail.txt`` for one run (LoadGen 6.0's keys, in its order)."""
    d = _Detail(0)
    _log_header(d, sut_name, qsl_name, qsl_total_count, qsl_performance_count, test_datetime)
    if plan.meta.get("audit_config"):  # LoadGen's StartTest, before it logs the settings
        d.log("warning_generic_message", AUDIT_CONFIG_WARNING, is_warning=True)
    for k, v in plan.scenario.requested_items(plan.settings).items():
        d.log(k, v)
    for k, v in plan.effective.log_items().items():
        d.log(k, v)
    d.log("raybench_shards", shards)
    if "arrival" in plan.meta:  # a load shape other than MLPerf's Poisson (scenario.arrival)
        d.log("raybench_load_shape", plan.meta["arrival"], is_warning=True)
    d.log("generic_message", "Starting accuracy mode" if plan.effective.accuracy else "Starting performance mode")
    for phase in plan.phases[:1]:
        d.log("loaded_qsl_set", [int(x) for x in phase.loaded_set[:4096]])
    spq = plan.phases[0].samples_per_query if plan.phases else plan.effective.samples_per_query
    d.log("generated_query_count", len(plan.phases) if plan.scenario.name == "Offline" else plan.query_count)
    d.log("generated_samples_per_query", spq)
    d.log("generated_query_duration", plan.phases[0].generated_duration_ns if plan.phases else 0)
    t_end = end_time_ns if end_time_ns is not None else m.duration_ns
    d.log("power_begin", test_datetime.strftime("%m-%d-%Y %H:%M:%S.000"), event="INTERVAL_START")
    end_dt = test_datetime + _dt.timedelta(microseconds=t_end / 1000)
    d.log("power_end", end_dt.strftime("%m-%d-%Y %H:%M:%S.000"), t_ns=t_end, event="INTERVAL_END")
    _log_verdict(d, plan, m, t_end)
    _log_results(d, plan, m, t_end)
    # Failed samples are errors, as LoadGen logs errors: one error entry per reason, counted in
    # num_errors, so the submission checker sees them.
    for reason, count in sorted(m.errors.items(), key=lambda kv: (-kv[1], kv[0])):
        d.log("error_runtime", f"{count} sample(s) failed: {reason}", t_ns=t_end, is_error=True)
    d.log("num_errors", len(m.errors), t_ns=t_end)
    d.log("raybench_failed_samples", m.num_errors, t_ns=t_end)
    return d.lines


def _log_header(d: _Detail, sut_name: str, qsl_name: str, total: int, perf: int, when: _dt.datetime) -> None:
    d.log("loadgen_version", f"{LOADGEN_COMPAT_VERSION} (raybench {__version__})")
    d.log("loadgen_build_date_local", when.astimezone().isoformat())
    d.log("loadgen_build_date_utc", when.astimezone(_dt.UTC).isoformat())
    d.log("loadgen_git_commit_date", "")
    d.log("loadgen_git_log_message", "")
    d.log("loadgen_git_status_message", "")
    d.log("loadgen_file_sha1", {})
    d.log("test_datetime", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    d.log("sut_name", sut_name)
    d.log("get_sut_name_duration_ns", 0)
    d.log("qsl_name", qsl_name)
    d.log("qsl_reported_total_count", total)
    d.log("qsl_reported_performance_count", perf)


def _log_verdict(d: _Detail, plan: Plan, m: RunMetrics, t_end: int) -> None:
    sc = plan.scenario.name
    d.log("result_validity", m.validity, t_ns=t_end)
    if sc == "Server":
        d.log("result_perf_constraints_met", m.perf_constraints_met, t_ns=t_end)
    d.log("result_min_duration_met", m.min_duration_met, t_ns=t_end)
    d.log("result_min_queries_met", m.min_queries_met, t_ns=t_end)
    d.log("early_stopping_met", m.early_stopping_met, t_ns=t_end)
    if m.validity != "VALID":
        d.log("result_invalid_reason", " ".join(m.recommendations + m.invalid_reasons), t_ns=t_end)
    named = dict(m.early_stopping_results)
    if plan.settings.use_token_latencies and sc == "Server":
        for nm in ("ttft", "tpot"):
            if nm in named:
                d.log(f"early_stopping_{nm}_result", " ".join(named[nm].lines), t_ns=t_end)
    elif "latency" in named:
        d.log("early_stopping_result", " ".join(named["latency"].lines), t_ns=t_end)
    d.log("result_query_count", m.queries_issued, t_ns=t_end)
    if sc == "Server":
        d.log("result_overlatency_query_count", m.overlatency_count, t_ns=t_end)


def _log_grid(d: _Detail, fmt: str, values: dict[str, Any], t_end: int) -> None:
    for p in PERCENTILE_GRID:
        d.log(fmt.format(_pct_name(p)), values.get(f"p{p * 100:g}", 0), t_ns=t_end)


def _log_results(d: _Detail, plan: Plan, m: RunMetrics, t_end: int) -> None:
    sc, lat = plan.scenario.name, m.latency
    named = dict(m.early_stopping_results)
    if sc == "SingleStream":
        d.log("result_qps_with_loadgen_overhead", m.samples_per_second, t_ns=t_end)
        mean_s = lat.get("mean", 0) / 1e9
        d.log("result_qps_without_loadgen_overhead", (1.0 / mean_s) if mean_s else 0.0, t_ns=t_end)
        d.log("early_stopping_latency_ss", _es_estimate(named.get("latency")), t_ns=t_end)
        ms = named.get("latency")
        d.log("early_stopping_latency_ms", int(ms.multistream_estimate_ns or 0) if ms is not None else 0, t_ns=t_end)
    elif sc == "MultiStream":
        q = m.query_latency
        for k in ("min", "max", "mean"):
            d.log(f"result_{k}_query_latency_ns", q.get(k, 0), t_ns=t_end)
        _log_grid(d, "result_{}_percentile_per_query_latency_ns", q, t_end)
        d.log("early_stopping_latency_ms", _es_estimate(named.get("latency")), t_ns=t_end)
    elif sc in ("Server", "Concurrency"):
        d.log("result_scheduled_samples_per_sec", m.scheduled_samples_per_second or 0.0, t_ns=t_end)
        d.log("result_completed_samples_per_sec", m.samples_per_second, t_ns=t_end)
    elif sc == "Offline":
        d.log("result_samples_per_second", m.samples_per_second, t_ns=t_end)
    for k in ("min", "max", "mean"):
        d.log(f"result_{k}_latency_ns", lat.get(k, 0), t_ns=t_end)
    _log_grid(d, "result_{}_percentile_latency_ns", lat, t_end)
    if plan.settings.use_token_latencies:
        _log_token_results(d, sc, m, t_end)


def _log_token_results(d: _Detail, sc: str, m: RunMetrics, t_end: int) -> None:
    if sc == "Offline":
        d.log("result_tokens_per_second", m.tokens_per_second or 0.0, t_ns=t_end)
        return
    if not m.ttft:
        return
    for k in ("min", "max", "mean"):
        d.log(f"result_first_token_{k}_latency_ns", m.ttft[k], t_ns=t_end)
    _log_grid(d, "result_first_token_{}_percentile_latency_ns", m.ttft, t_end)
    tps_w = m.total_tokens / m.final_query_issued_s if m.final_query_issued_s else 0.0
    mean_s = m.latency.get("mean", 0) / 1e9
    tps_wo = m.total_tokens / (mean_s * m.samples_completed) if mean_s and m.samples_completed else 0.0
    d.log("result_token_throughput_with_loadgen_overhead", tps_w, t_ns=t_end)
    d.log("result_token_throughput", tps_wo, t_ns=t_end)
    if m.tpot:
        _log_grid(d, "result_time_per_output_token_{}_percentile_ns", m.tpot, t_end)
        for k in ("min", "max", "mean"):
            d.log(f"result_time_to_output_token_{k}", m.tpot[k], t_ns=t_end)
    if sc == "Server":
        d.log("result_completed_tokens_per_second", m.tokens_per_second or 0.0, t_ns=t_end)


def _es_estimate(r: Any) -> int:
    return int(r.estimate_ns) if r is not None and r.estimate_ns is not None else 0


def _grid_lines(label: str, values: dict[str, Any]) -> list[str]:
    return [f"{_pct_name(p)} percentile {label}   : {values.get(f'p{p * 100:g}', 0)}" for p in PERCENTILE_GRID]


def summary_lines(plan: Plan, m: RunMetrics, *, sut_name: str, qsl_performance_count: int) -> list[str]:
    """The lines of ``mlperf_log_summary.txt`` (LoadGen's text layout)."""
    eff, sc = plan.effective, plan.scenario.name
    bar = "================================================"
    out = [bar, "MLPerf Results Summary", bar, f"SUT name : {sut_name}", f"Scenario : {sc}", f"Mode     : {eff.mode}"]
    out += _summary_result(plan, m)
    out += ["", bar, "Additional Stats", bar]
    out += _summary_stats(plan, m)
    out += ["", bar, "Test Parameters Used", bar]
    out += _summary_parameters(plan)
    # one warning each, as the detail log has them: audit.config (LoadGen's own line), a non-Poisson load shape
    n_warn = bool(plan.meta.get("audit_config")) + ("arrival" in plan.meta)
    note = " (raybench_load_shape: not MLPerf's Poisson schedule)" if "arrival" in plan.meta else ""
    warning = (f"{n_warn} warning{'s' if n_warn > 1 else ''} encountered. See detailed log{note}."
               if n_warn else "No warnings encountered during test.")
    out += ["", warning, ""]
    out.append("No errors encountered during test." if not m.errors else
               f"{len(m.errors)} ERROR{'S' if len(m.errors) > 1 else ''} encountered. See detailed log.")
    return out


def _summary_result(plan: Plan, m: RunMetrics) -> list[str]:
    s, sc, p = plan.settings, plan.scenario.name, plan.effective.target_latency_percentile
    out = []
    if sc in ("SingleStream", "MultiStream"):
        values = m.latency if sc == "SingleStream" else m.query_latency
        out.append(f"{p * 100:.1f}th percentile latency (ns) : {int(values.get(f'p{p * 100:g}', 0))}")
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
        out += [f" * {r}" for r in m.recommendations + m.invalid_reasons]
    named = dict(m.early_stopping_results)
    if s.use_token_latencies and sc == "Server":
        for nm, title in (("ttft", "TTFT Early Stopping Result:"), ("tpot", "TPOT Early Stopping Result:")):
            if nm in named:
                out += [title, *named[nm].lines]
    elif "latency" in named:
        out += ["Early Stopping Result:", *named["latency"].lines]
    return out


def _summary_stats(plan: Plan, m: RunMetrics) -> list[str]:
    s, sc, lat = plan.settings, plan.scenario.name, m.latency
    out = []
    if sc == "SingleStream":
        mean_s = lat.get("mean", 0) / 1e9
        out += [f"QPS w/ loadgen overhead         : {m.samples_per_second:.2f}",
                f"QPS w/o loadgen overhead        : {(1 / mean_s) if mean_s else 0.0:.2f}", ""]
    elif sc in ("Server", "Concurrency"):
        out += [f"Scheduled samples per second : {m.scheduled_samples_per_second or 0.0:.2f}", ""]
    elif sc == "MultiStream":
        q = m.query_latency
        out += ["Per-query latency:  ", f"Min latency (ns)                : {q.get('min', 0)}",
                f"Max latency (ns)                : {q.get('max', 0)}", f"Mean latency (ns)               : {q.get('mean', 0)}"]
        out += _grid_lines("latency (ns)", q)
    if sc != "MultiStream":
        out += [f"Min latency (ns)                : {lat.get('min', 0)}", f"Max latency (ns)                : {lat.get('max', 0)}",
                f"Mean latency (ns)               : {lat.get('mean', 0)}"]
        out += _grid_lines("latency (ns)", lat)
    if s.use_token_latencies and sc != "Offline" and m.ttft:
        out += ["", f"Min First Token latency (ns)                : {m.ttft['min']}",
                f"Max First Token latency (ns)                : {m.ttft['max']}",
                f"Mean First Token latency (ns)               : {m.ttft['mean']}"]
        out += _grid_lines("first token latency (ns)", m.ttft)
        if m.tpot:
            out += ["", f"Min Time to Output Token (ns)                : {m.tpot['min']}",
                    f"Max Time to Output Token (ns)                : {m.tpot['max']}",
                    f"Mean Time to Output Token (ns)               : {m.tpot['mean']}"]
            out += _grid_lines("time to output token (ns)", m.tpot)
    out += ["", f"Send lateness p50 / p99 / max (ns): {m.lateness['p50']} / {m.lateness['p99']} / {m.lateness['max']}",
            f"Event-loop lag p50 / p99 / max (ns): {m.loop_lag['p50']} / {m.loop_lag['p99']} / {m.loop_lag['max']}",
            f"Harness + transport overhead p50 / p99 / max (ns): {m.overhead['p50']} / {m.overhead['p99']} / "
            f"{m.overhead['max']}",
            f"Percentiles read from merged histograms: relative error <= {m.percentile_relative_error:.3%} "
            "(min, max, mean exact)"]
    return out


def _summary_parameters(plan: Plan) -> list[str]:
    eff, s = plan.effective, plan.settings
    out = [f"samples_per_query : {plan.phases[0].samples_per_query if plan.phases else eff.samples_per_query}",
           f"target_qps : {eff.target_qps:g}"]
    if s.use_token_latencies:
        out += [f"ttft_latency (ns): {s.server_ttft_latency}", f"tpot_latency (ns): {s.server_tpot_latency}"]
    else:
        out.append(f"target_latency (ns): {eff.target_latency_ns}")
    out += [f"max_async_queries : {eff.max_async_queries}", f"min_duration (ms): {eff.min_duration_ms}",
            f"max_duration (ms): {eff.max_duration_ms}", f"min_query_count : {eff.min_query_count}",
            f"max_query_count : {eff.max_query_count}", f"qsl_rng_seed : {eff.qsl_rng_seed}",
            f"sample_index_rng_seed : {eff.sample_index_rng_seed}", f"schedule_rng_seed : {eff.schedule_rng_seed}",
            f"accuracy_log_rng_seed : {eff.accuracy_log_rng_seed}",
            f"accuracy_log_probability : {eff.accuracy_log_probability:g}",
            f"accuracy_log_sampling_target : {eff.accuracy_log_sampling_target}",
            f"print_timestamps : {int(eff.print_timestamps)}",
            f"performance_issue_unique : {int(eff.performance_issue_unique)}",
            f"performance_issue_same : {int(eff.performance_issue_same)}",
            f"performance_issue_same_index : {eff.performance_issue_same_index}",
            f"performance_sample_count : {eff.performance_sample_count}",
            f"accuracy_sample_count : {eff.accuracy_sample_count}"]
    if plan.scenario.name == "Concurrency":
        out.append(f"target_concurrency : {eff.concurrency}")
    return out
