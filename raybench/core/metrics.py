"""Metrics and the verdict of a run: the rules every scenario shares, plus the scenario's own.

LoadGen's rules (``loadgen/results.cc``): a run is VALID only if min duration, min queries (and
min samples), the performance constraints and early stopping all hold; what each of those means
is the scenario's (see :mod:`raybench.core.scenarios`). Percentiles follow LoadGen's
``sorted[int(n * p)]`` on the grid 50/90/95/97/99/99.9 (no interpolation), read from the merged
histograms (relative error <= 1/2048; min, max and mean exact); verdicts are exact.

raybench adds its own reasons, each listed in ``invalid_reasons``: a shard that failed or was cut
by the deadline, failed samples beyond ``max_error_rate``, and a harness that fell behind (send
lateness p99 above ``lateness_p99_ms``).

Token-workload metrics users compare on (all from exact counters except the percentiles):

* input / output sequence lengths (per request) and the finish reasons (counted per reason);
* goodput under the run's SLOs: ``requests_per_second = samples_per_second * met / completed``
  and ``output_tokens_per_second = tokens_per_second * met_tokens / total_tokens``, where
  ``met`` / ``met_tokens`` are the requests that met every SLO and their output tokens (the same
  throughput window as the scenario's own rates);
* interactivity (MLPerf Endpoints' TPS per user): ``1000 / TPOT p90 (ms)``;
* end-to-end interactivity (MLPerf Endpoints, agentic): ``sum(output tokens) / sum(end-to-end
  time in s)`` over every successful request (or conversation turn);
* conversations (multi-turn): completed / failed and the latency of whole conversations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raybench.core.aggregate import RELATIVE_ERROR, RunStats, merge_stats
from raybench.core.early_stopping import EarlyStoppingResult
from raybench.core.histogram import Histogram
from raybench.core.plan import Plan
from raybench.core.records import ShardReport
from raybench.core.scenarios.base import Verdict
from raybench.core.stats import PERCENTILE_GRID, LatencyStats
from raybench.core.timeline import merge_timeline, shard_summaries

__all__ = ["Limits", "RunMetrics", "compute_metrics", "latency_summary", "token_metrics"]


@dataclass(frozen=True)
class Limits:
    """raybench's own validity limits, on top of LoadGen's.

    Attributes:
        max_error_rate: fraction of samples allowed to fail (default 0: any failure is INVALID).
        lateness_p99_ms: the harness is "behind" when its send lateness p99 exceeds this (scheduled
            scenarios), or when its event loop runs timers later than this half of the time (any).
    """

    max_error_rate: float = 0.0
    lateness_p99_ms: float = 10.0


def latency_summary(stats: LatencyStats | None) -> dict[str, float | int]:
    """min/max/mean and the LoadGen percentile grid of a latency set (ns); ``{}`` when empty."""
    if stats is None or stats.count == 0:
        return {}
    out: dict[str, float | int] = {"min": int(stats.min), "max": int(stats.max), "mean": int(stats.mean)}
    for p in PERCENTILE_GRID:
        out[f"p{p * 100:g}"] = int(stats.percentile(p))
    return out


@dataclass
class RunMetrics:
    """Everything computed from the merged reports of one run."""

    scenario: str
    mode: str
    validity: str
    invalid_reasons: list[str]
    recommendations: list[str]
    queries_issued: int
    samples_issued: int
    samples_completed: int
    num_errors: int
    errors: dict[str, int]
    duration_ns: int
    samples_per_second: float
    scheduled_samples_per_second: float | None
    tokens_per_second: float | None
    latency: dict[str, Any]
    query_latency: dict[str, Any]
    lateness: dict[str, Any]
    loop_lag: dict[str, Any]
    overhead: dict[str, Any]
    ttft: dict[str, Any]
    tpot: dict[str, Any]
    itl: dict[str, Any]
    early_stopping: dict[str, Any]
    early_stopping_results: list[tuple[str, EarlyStoppingResult]]
    min_duration_met: bool
    min_queries_met: bool
    perf_constraints_met: bool
    early_stopping_met: bool
    overlatency_count: int
    final_query_scheduled_s: float
    final_query_issued_s: float
    final_query_done_s: float
    max_latency_s: float
    total_tokens: int
    shards: list[dict[str, Any]]
    histograms: dict[str, Histogram]
    timeline: list[dict[str, Any]]
    percentile_relative_error: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    input_tokens: dict[str, Any] = field(default_factory=dict)
    output_tokens: dict[str, Any] = field(default_factory=dict)
    total_input_tokens: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    goodput: dict[str, Any] = field(default_factory=dict)
    interactivity: float | None = None
    e2e_interactivity: float | None = None
    conversations: dict[str, Any] = field(default_factory=dict)


def compute_metrics(plan: Plan, reports: list[ShardReport], limits: Limits | None = None) -> RunMetrics:
    """Merge the shard reports and judge the run with LoadGen's rules and raybench's limits."""
    limits, sc, eff = limits or Limits(), plan.scenario, plan.effective
    st = merge_stats(rep.stats for rep in reports)
    accuracy = eff.accuracy
    queries = sc.queries_issued(st, plan)
    v = Verdict()
    min_dur_s = eff.min_duration_ms / 1000.0
    min_duration_met = accuracy or sc.duration_s(st) >= min_dur_s
    if not min_duration_met:
        ran = max(st.final_scheduled_ns, st.final_issued_ns, st.latency.max) / 1e9
        v.fail(f"min duration not met: ran {ran:.3f}s of the required {min_dur_s:g}s", sc.DURATION_HINT)
    n = st.latency.count
    if accuracy:
        min_queries_met = st.samples_ok == plan.sample_count
        if not min_queries_met:
            v.fail(f"accuracy run incomplete: {st.samples_ok} of {plan.sample_count} samples answered",
                   "The test exited early, before enough queries were issued.")
    else:
        min_queries_met = queries >= eff.min_query_count and n >= eff.min_sample_count
        if not min_queries_met:
            v.fail(f"min queries not met: {queries} queries issued / {n} samples completed, "
                   f"need {eff.min_query_count} / {eff.min_sample_count}",
                   "The test exited early, before enough queries were issued.")
    perf = Verdict() if accuracy else sc.constraints(st, plan)
    es_results = [] if accuracy else sc.early_stopping(st, plan)
    es_reasons = [
        "early stopping not met: " + (f"need {r.queries_needed} more queries" if r.queries_needed else " ".join(r.lines))
        for _, r in es_results if not r.met
    ]
    own = _raybench_reasons(reports, st, limits, scheduled=sc.lateness_checked() and not accuracy,
                            performance=not accuracy)
    reasons = v.reasons + perf.reasons + es_reasons + own
    tp = sc.throughput(st)
    es_dict: dict[str, Any] = {"met": not es_reasons}
    for name, r in es_results:
        es_dict[name] = {"met": r.met, "percentile": r.percentile, "estimate_ns": r.estimate_ns,
                         "overlatency_count": r.overlatency_count, "queries_needed": r.queries_needed,
                         "min_queries_required": r.min_queries_required, "lines": list(r.lines)}
        if name in ("latency", "ttft"):
            es_dict.setdefault("estimate_ns", r.estimate_ns)
    late = st.lateness
    return RunMetrics(
        scenario=sc.name, mode=eff.mode, validity="INVALID" if reasons else "VALID",
        invalid_reasons=reasons, recommendations=v.recommendations + perf.recommendations,
        queries_issued=queries, samples_issued=st.samples_issued, samples_completed=st.samples_ok,
        num_errors=st.samples_failed, errors=dict(st.errors), duration_ns=st.last_done_ns,
        samples_per_second=float(tp.samples_per_second), scheduled_samples_per_second=tp.scheduled_samples_per_second,
        tokens_per_second=tp.tokens_per_second, latency=latency_summary(st.latency),
        query_latency=latency_summary(st.query_latency),
        lateness=_spread(late), loop_lag=_spread(st.loop_lag), overhead=_spread(st.overhead),
        ttft=latency_summary(st.ttft), tpot=latency_summary(st.tpot), itl=latency_summary(st.itl),
        early_stopping=es_dict, early_stopping_results=es_results, min_duration_met=min_duration_met,
        min_queries_met=min_queries_met, perf_constraints_met=perf.ok, early_stopping_met=not es_reasons,
        overlatency_count=0 if accuracy else sc.overlatency_count(st, plan),
        final_query_scheduled_s=st.final_scheduled_ns / 1e9, final_query_issued_s=st.final_issued_ns / 1e9,
        final_query_done_s=st.final_done_ns / 1e9, max_latency_s=st.latency.max / 1e9 if n else 0.0,
        total_tokens=st.total_tokens, shards=shard_summaries(reports),
        histograms={k: getattr(st, k) for k in ("latency", "lateness", "ttft", "tpot", "query_latency", "itl",
                                                "conversation")},
        timeline=merge_timeline(reports), percentile_relative_error=RELATIVE_ERROR,
        **token_metrics(st, tp.samples_per_second, tp.tokens_per_second),
    )


def token_metrics(st: RunStats, samples_per_second: float, tokens_per_second: float | None) -> dict[str, Any]:
    """The token-workload metrics of the module docstring, as :class:`RunMetrics` fields."""
    out: dict[str, Any] = {
        "input_tokens": _count_summary(st.input_tokens), "output_tokens": _count_summary(st.output_tokens),
        "total_input_tokens": st.total_input_tokens, "finish_reasons": dict(st.finish_reasons.most_common()),
        "interactivity": None, "e2e_interactivity": None, "goodput": {}, "conversations": {},
    }
    if st.tpot.count:
        p90 = st.tpot.percentile(0.9)
        out["interactivity"] = 1e9 / p90 if p90 > 0 else None
    if st.total_tokens and st.latency_sum_ns > 0:
        out["e2e_interactivity"] = st.total_tokens / (st.latency_sum_ns / 1e9)
    if st.slo:
        ok = st.samples_ok
        out["goodput"] = {
            "slo_ms": {k: v / 1e6 for k, v in st.slo.items()},
            "requests_met": st.slo_met, "requests_completed": ok, "output_tokens_met": st.slo_met_tokens,
            "fraction_met": st.slo_met / ok if ok else 0.0,
            "requests_per_second": samples_per_second * st.slo_met / ok if ok else 0.0,
            "output_tokens_per_second": (tokens_per_second * st.slo_met_tokens / st.total_tokens
                                         if tokens_per_second and st.total_tokens else 0.0),
        }
    if st.conversations_ok or st.conversations_failed:
        out["conversations"] = {"completed": st.conversations_ok, "failed": st.conversations_failed,
                                "latency_ns": latency_summary(st.conversation)}
    return out


def _count_summary(h: Histogram) -> dict[str, Any]:
    """total count, min/max/mean and p50/p90/p99 of a per-request count (tokens); ``{}`` when empty."""
    if not h.count:
        return {}
    return {"count": int(h.count), "min": int(h.min), "max": int(h.max), "mean": float(h.mean),
            **{f"p{p * 100:g}": int(h.percentile(p)) for p in (0.5, 0.9, 0.99)}}


def _spread(h: Histogram) -> dict[str, int]:
    """p50 / p99 / max of a histogram (zeros when empty)."""
    if not h.count:
        return {"p50": 0, "p99": 0, "max": 0}
    return {"p50": int(h.percentile(0.5)), "p99": int(h.percentile(0.99)), "max": int(h.max)}


def _raybench_reasons(reports: list[ShardReport], st: RunStats, limits: Limits, scheduled: bool,
                      performance: bool) -> list[str]:
    """raybench's own INVALID reasons: failed shards, failed samples, a harness that fell behind
    (late sends in scheduled scenarios; a busy event loop in any scenario)."""
    out: list[str] = []
    for rep in reports:
        if rep.status != "ok":
            out.append(f"shard {rep.shard} ({rep.node}): {rep.status}: {rep.failure}")
    n_err, n = st.samples_failed, st.samples_issued
    if n_err and (n == 0 or n_err / max(1, n) > limits.max_error_rate):
        top = ", ".join(f"{k} (x{c})" for k, c in st.errors.most_common(3))
        out.append(f"{n_err} of {n} samples failed: {top}")
    if scheduled and st.lateness.count:
        p99 = st.lateness.percentile(0.99)
        if p99 > limits.lateness_p99_ms * 1e6:
            out.append(f"harness fell behind: send lateness p99 {p99 / 1e6:.3f} ms > {limits.lateness_p99_ms:g} ms "
                       "(add shards, or lower the target QPS or concurrency)")
    if performance and st.loop_lag.count:
        # The median, not a tail: one GC pause or a descheduled process is a hiccup, a loop that
        # is late half of the time cannot keep its queries moving.
        p50 = st.loop_lag.percentile(0.5)
        if p50 > limits.lateness_p99_ms * 1e6:
            out.append(f"harness fell behind: event-loop lag median {p50 / 1e6:.3f} ms > {limits.lateness_p99_ms:g} ms "
                       "(the shard's loop is too busy to keep its queries moving: add shards, or lower the "
                       "concurrency or QPS)")
    if n == 0:
        out.append("no query was issued")
    return out
