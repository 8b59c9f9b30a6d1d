"""Metrics and validity exactly as LoadGen computes them, from the merged shard reports.

Formulas (all times relative to T0, LoadGen's test start):

* sample latency = completed - intended (scheduled), over samples that completed without error;
  percentiles are ``sorted[int(n * p)]`` on the grid 50/90/95/97/99/99.9 (no interpolation).
* Server: completed samples/s = (n - 1) / completion time of the final query; scheduled
  samples/s = (n - 1) / scheduled time of the final query.
* Offline: samples/s = n / max latency; tokens/s = tokens / max latency.
* SingleStream: QPS with loadgen overhead = (n - 1) / issue time of the final query;
  without = 1 / mean latency.
* MultiStream: query latency = completion of its last sample - scheduled time.
* Tokens: TTFT = first token - intended; TPOT = (latency - TTFT) / (n_tokens - 1).

A run is VALID only if min duration, min queries (and min samples), the performance
constraints (Server: target-percentile latency, or TTFT and TPOT for token workloads) and
early stopping all hold. raybench adds its own reasons, each listed in ``invalid_reasons``: a
shard that failed or was cut by the deadline, failed samples, and a harness that fell behind
(send lateness p99 above the limit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raybench.core.early_stopping import (
    EarlyStoppingResult,
    latency_early_stopping,
    server_early_stopping,
)
from raybench.core.histogram import Histogram, merge_all
from raybench.core.plan import CLOSED_LOOP, Plan
from raybench.core.records import ShardReport, concat_records
from raybench.core.stats import PERCENTILE_GRID, ExactStats

__all__ = ["RunMetrics", "Limits", "compute_metrics", "latency_summary"]


@dataclass(frozen=True)
class Limits:
    """raybench's own validity limits, on top of LoadGen's.

    Attributes:
        max_error_rate: fraction of samples allowed to fail (default 0: any failure is INVALID).
        lateness_p99_ms: the harness is "behind" when its send lateness p99 exceeds this
            (Server and Poisson modes).
    """

    max_error_rate: float = 0.0
    lateness_p99_ms: float = 10.0


def latency_summary(stats: ExactStats | Histogram) -> dict[str, float | int]:
    """min/max/mean and the LoadGen percentile grid of a latency set (ns)."""
    if stats.count == 0:
        return {}
    out: dict[str, float | int] = {"min": int(stats.min), "max": int(stats.max), "mean": int(stats.mean)}
    for p in PERCENTILE_GRID:
        out[_pkey(p)] = int(stats.percentile(p))
    return out


def _pkey(p: float) -> str:
    v = p * 100
    return f"p{v:g}"


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
    extra: dict[str, Any] = field(default_factory=dict)


def _shard_histograms(rep: ShardReport) -> dict[str, Histogram]:
    """Histograms of one shard's records (what a shard contributes to the merge)."""
    r = rep.records
    ok = (r["error"] == 0) & (r["completed_ns"] > 0) if r else np.zeros(0, bool)
    out = {k: Histogram() for k in ("latency", "lateness", "ttft", "tpot")}
    if not r or not ok.any():
        return out
    lat = r["completed_ns"][ok] - r["intended_ns"][ok]
    out["latency"].record_many(np.maximum(lat, 0))
    out["lateness"].record_many(np.maximum(r["issued_ns"][ok] - r["intended_ns"][ok], 0))
    ft = r["first_token_ns"][ok]
    has_ft = ft > 0
    if has_ft.any():
        ttft = ft[has_ft] - r["intended_ns"][ok][has_ft]
        out["ttft"].record_many(np.maximum(ttft, 0))
        tok = r["n_tokens"][ok][has_ft]
        multi = tok > 1
        if multi.any():
            tpot = (lat[has_ft][multi] - ttft[multi]) // (tok[multi] - 1)
            out["tpot"].record_many(np.maximum(tpot, 0))
    return out


def compute_metrics(plan: Plan, reports: list[ShardReport], limits: Limits | None = None) -> RunMetrics:
    """Merge shard reports and compute LoadGen's metrics and verdict."""
    limits = limits or Limits()
    eff = plan.effective
    s = plan.settings
    sc = eff.scenario
    accuracy_mode = plan.accuracy_log_all
    recs = concat_records([r.records for r in reports])
    # Error reasons are per shard; rebuild global reason counts.
    errors: Counter[str] = Counter()
    for rep in reports:
        codes = rep.records.get("error") if rep.records else None
        if codes is None or not len(codes):
            continue
        vals, counts = np.unique(codes[codes > 0], return_counts=True)
        for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
            errors[rep.errors[v - 1]] += c
    completed_mask = recs["completed_ns"] > 0
    err_mask = recs["error"] > 0
    ok = completed_mask & ~err_mask
    n_issued = int(recs["query_id"].shape[0])
    n_ok = int(ok.sum())
    n_err = int(err_mask.sum())

    lat = (recs["completed_ns"] - recs["intended_ns"])[ok]
    lat_stats = ExactStats(np.maximum(lat, 0))
    late = (recs["issued_ns"] - recs["intended_ns"])[ok]
    late_stats = ExactStats(np.maximum(late, 0))

    if sc == "Offline":
        queries_issued = len(plan.phases) if n_issued else 0
    else:
        queries_issued = sum(r.queries_issued for r in reports)

    # Timings of the final query (LoadGen: the last query issued).
    final_sched = final_issued = final_done = 0.0
    if n_issued:
        last = int(np.lexsort((recs["seq_id"], recs["intended_ns"]))[-1]) if sc == "Server" else int(
            np.argmax(recs["issued_ns"])
        )
        final_sched = recs["intended_ns"][last] / 1e9
        final_issued = recs["issued_ns"][last] / 1e9
        final_done = recs["completed_ns"][last] / 1e9
    max_latency_s = lat_stats.max / 1e9 if lat_stats.count else 0.0
    duration_ns = int(recs["completed_ns"].max()) if n_issued else 0

    # Query latencies (MultiStream): rows of one query are contiguous within a shard.
    query_stats = None
    if sc == "MultiStream" and n_issued:
        spq = eff.samples_per_query
        q_lat = []
        for rep in reports:
            r = rep.records
            if not r or not r["query_id"].shape[0]:
                continue
            m = r["query_id"].shape[0] // spq * spq
            done = r["completed_ns"][:m].reshape(-1, spq)
            bad = (r["error"][:m].reshape(-1, spq) > 0).any(axis=1) | (done == 0).any(axis=1)
            qlat = done.max(axis=1) - r["intended_ns"][:m].reshape(-1, spq)[:, 0]
            q_lat.append(qlat[~bad])
        query_stats = ExactStats(np.concatenate(q_lat) if q_lat else np.zeros(0, np.int64))

    # Tokens.
    tokens = recs["n_tokens"][ok].astype(np.int64)
    total_tokens = int(tokens.sum())
    ft = recs["first_token_ns"][ok]
    has_ft = ft > 0
    ttft_stats = tpot_stats = None
    if has_ft.any():
        ttft_all = ft[has_ft] - recs["intended_ns"][ok][has_ft]
        ttft_stats = ExactStats(np.maximum(ttft_all, 0))
        tok = tokens[has_ft]
        multi = tok > 1
        tpot_all = (lat[has_ft][multi] - ttft_all[multi]) // (tok[multi] - 1)
        tpot_stats = ExactStats(np.maximum(tpot_all, 0))
    gaps = [r.token_gaps_ns for r in reports if r.token_gaps_ns is not None]
    itl_stats = ExactStats(np.concatenate(gaps)) if gaps else None

    # Throughput.
    sps = 0.0
    scheduled_sps: float | None = None
    tps: float | None = None
    n = lat_stats.count
    if sc == "Offline":
        sps = n / max_latency_s if max_latency_s > 0 else 0.0
        tps = total_tokens / max_latency_s if (max_latency_s > 0 and total_tokens) else None
    elif sc in ("Server", CLOSED_LOOP):
        sps = (n - 1) / final_done if final_done > 0 and n > 1 else 0.0
        if sc == CLOSED_LOOP and duration_ns > 0:
            sps = n / (duration_ns / 1e9)
        scheduled_sps = (n - 1) / final_sched if final_sched > 0 and n > 1 else 0.0
        tps = total_tokens / final_done if (final_done > 0 and total_tokens) else None
    elif sc == "SingleStream":
        sps = (n - 1) / final_issued if final_issued > 0 and n > 1 else 0.0
        tps = total_tokens / final_issued if (final_issued > 0 and total_tokens) else None
    elif sc == "MultiStream":
        sps = n / (duration_ns / 1e9) if duration_ns else 0.0

    # ---- validity (LoadGen) -------------------------------------------------------------
    reasons: list[str] = []
    recs_txt: list[str] = []
    min_dur_s = eff.min_duration_ms / 1000.0
    if sc == "Offline":
        min_duration_met = bool(max_latency_s >= min_dur_s)
        rec = "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
    elif sc == "Server":
        min_duration_met = final_sched >= min_dur_s
        rec = "Increase the target QPS so the loadgen pre-generates more queries."
    elif sc == CLOSED_LOOP:
        min_duration_met = duration_ns / 1e9 >= min_dur_s
        rec = "Increase the duration or the concurrency."
    else:
        min_duration_met = final_issued >= min_dur_s
        rec = "Decrease the expected latency so the loadgen pre-generates more queries."
    if accuracy_mode:
        min_duration_met = True
    if not min_duration_met:
        reasons.append(f"min duration not met: ran {max(final_sched, final_issued, max_latency_s):.3f}s of the required {min_dur_s:g}s")
        recs_txt.append(rec)
    min_queries_met = bool(queries_issued >= eff.min_query_count and n >= eff.min_sample_count)
    if accuracy_mode:
        min_queries_met = n_ok == plan.sample_count
    if not min_queries_met:
        if accuracy_mode:
            reasons.append(f"accuracy run incomplete: {n_ok} of {plan.sample_count} samples answered")
        else:
            reasons.append(
                f"min queries not met: {queries_issued} queries / {n} samples issued, "
                f"need {eff.min_query_count} / {eff.min_sample_count}"
            )
        recs_txt.append("The test exited early, before enough queries were issued.")

    perf_ok = True
    overlatency = 0
    token_mode = bool(s.use_token_latencies)
    target = eff.target_latency_ns
    p = eff.target_latency_percentile
    if sc == "Server" and not accuracy_mode:
        if not token_mode:
            if n and lat_stats.percentile(p) > target:
                perf_ok = False
                reasons.append(
                    f"latency constraint not met: p{p * 100:g} latency {lat_stats.percentile(p) / 1e6:.3f} ms "
                    f"> target {target / 1e6:g} ms"
                )
                recs_txt.append("Reduce target QPS to improve latency.")
        else:
            if ttft_stats is None or not ttft_stats.count:
                perf_ok = False
                reasons.append("token latencies required but the SUT reported no first token")
            else:
                if ttft_stats.percentile(p) > s.server_ttft_latency:
                    perf_ok = False
                    reasons.append(
                        f"TTFT constraint not met: p{p * 100:g} TTFT {ttft_stats.percentile(p) / 1e6:.3f} ms "
                        f"> {s.server_ttft_latency / 1e6:g} ms"
                    )
                    recs_txt.append("TTFT constrain not met: Reduce target QPS to improve latency.")
                if tpot_stats is not None and tpot_stats.count and tpot_stats.percentile(p) > s.server_tpot_latency:
                    perf_ok = False
                    reasons.append(
                        f"TPOT constraint not met: p{p * 100:g} TPOT {tpot_stats.percentile(p) / 1e6:.3f} ms "
                        f"> {s.server_tpot_latency / 1e6:g} ms"
                    )
                    recs_txt.append("TPOT constrain not met: Reduce target QPS to improve latency.")
        overlatency = lat_stats.count_above(target) if not token_mode else 0

    # Early stopping.
    es_results: list[tuple[str, EarlyStoppingResult]] = []
    if not accuracy_mode:
        if sc == "Server":
            if token_mode and ttft_stats is not None:
                tp = tpot_stats if tpot_stats is not None else ExactStats(np.zeros(0, np.int64))
                es_results.append(("tpot", server_early_stopping(queries_issued, tp.count_above(s.server_tpot_latency), p)))
                es_results.append(("ttft", server_early_stopping(queries_issued, ttft_stats.count_above(s.server_ttft_latency), p)))
            else:
                es_results.append(("latency", server_early_stopping(queries_issued, overlatency, p)))
        elif sc == "SingleStream":
            # LoadGen also estimates p99 from SingleStream (to infer MultiStream on edge systems).
            es_results.append(("latency", latency_early_stopping(lat_stats, p, multistream_percentile=0.99)))
        elif sc == "MultiStream" and query_stats is not None:
            es_results.append(("latency", latency_early_stopping(query_stats, p)))
    gating = [r for _, r in es_results]
    es_met = all(r.met for r in gating)
    if not es_met:
        for r in gating:
            if not r.met:
                reasons.append(
                    "early stopping not met: "
                    + (f"need {r.queries_needed} more queries" if r.queries_needed else " ".join(r.lines))
                )

    # ---- raybench's own reasons ------------------------------------------------------
    for rep in reports:
        if rep.status != "ok":
            reasons.append(f"shard {rep.shard} ({rep.node}): {rep.status}: {rep.failure}")
    if n_err and (n_issued == 0 or n_err / max(1, n_issued) > limits.max_error_rate):
        top = ", ".join(f"{k} (x{v})" for k, v in errors.most_common(3))
        reasons.append(f"{n_err} of {n_issued} samples failed: {top}")
    if sc == "Server" and late_stats.count and not accuracy_mode:
        p99_late = late_stats.percentile(0.99)
        if p99_late > limits.lateness_p99_ms * 1e6:
            reasons.append(
                f"harness fell behind: send lateness p99 {p99_late / 1e6:.3f} ms > {limits.lateness_p99_ms:g} ms "
                f"(add shards or lower the target QPS)"
            )
    if n_issued == 0:
        reasons.append("no query was issued")
    valid = min_duration_met and min_queries_met and perf_ok and es_met and not reasons
    es_dict: dict[str, Any] = {"met": es_met}
    for name, r in es_results:
        es_dict[name] = {
            "met": r.met,
            "percentile": r.percentile,
            "estimate_ns": r.estimate_ns,
            "overlatency_count": r.overlatency_count,
            "queries_needed": r.queries_needed,
            "min_queries_required": r.min_queries_required,
            "lines": list(r.lines),
        }
        if name in ("latency", "ttft") and "estimate_ns" not in es_dict:
            es_dict["estimate_ns"] = r.estimate_ns

    # ---- per shard, histograms, timeline ---------------------------------------------
    shard_hists = [_shard_histograms(rep) for rep in reports]
    hists = {k: merge_all(h[k] for h in shard_hists) for k in ("latency", "lateness", "ttft", "tpot")}
    shards = []
    for rep, h in zip(reports, shard_hists, strict=True):
        r = rep.records
        shards.append(
            {
                "shard": rep.shard,
                "node": rep.node,
                "status": rep.status,
                "failure": rep.failure,
                "end_reason": rep.end_reason,
                "queries_issued": rep.queries_issued,
                "samples_issued": int(r["query_id"].shape[0]) if r else 0,
                "samples_completed": int(((r["completed_ns"] > 0) & (r["error"] == 0)).sum()) if r else 0,
                "errors": int((r["error"] > 0).sum()) if r else 0,
                "lateness_p99_ns": h["lateness"].percentile(0.99) if h["lateness"].count else 0,
                "latency_p99_ns": h["latency"].percentile(0.99) if h["latency"].count else 0,
            }
        )
    timeline = _merge_timeline(reports)
    return RunMetrics(
        scenario=sc,
        mode=eff.mode,
        validity="VALID" if valid else "INVALID",
        invalid_reasons=reasons,
        recommendations=recs_txt,
        queries_issued=queries_issued,
        samples_issued=n_issued,
        samples_completed=n_ok,
        num_errors=n_err,
        errors=dict(errors),
        duration_ns=duration_ns,
        samples_per_second=float(sps),
        scheduled_samples_per_second=scheduled_sps,
        tokens_per_second=tps,
        latency=latency_summary(lat_stats),
        query_latency=latency_summary(query_stats) if query_stats is not None else {},
        lateness=_lateness_summary(late_stats),
        ttft=latency_summary(ttft_stats) if ttft_stats is not None else {},
        tpot=latency_summary(tpot_stats) if tpot_stats is not None else {},
        itl=latency_summary(itl_stats) if itl_stats is not None else {},
        early_stopping=es_dict,
        early_stopping_results=es_results,
        min_duration_met=min_duration_met,
        min_queries_met=min_queries_met,
        perf_constraints_met=perf_ok,
        early_stopping_met=es_met,
        overlatency_count=int(overlatency),
        final_query_scheduled_s=final_sched,
        final_query_issued_s=final_issued,
        final_query_done_s=final_done,
        max_latency_s=max_latency_s,
        total_tokens=total_tokens,
        shards=shards,
        histograms=hists,
        timeline=timeline,
    )


def _lateness_summary(stats: ExactStats) -> dict[str, int]:
    if not stats.count:
        return {"p50": 0, "p99": 0, "max": 0}
    return {"p50": int(stats.percentile(0.5)), "p99": int(stats.percentile(0.99)), "max": int(stats.max)}


def _merge_timeline(reports: list[ShardReport]) -> list[dict[str, Any]]:
    """Per-second progress summed over shards (seconds since T0)."""
    by_sec: dict[int, dict[str, Any]] = {}
    cumulative = ("issued", "completed", "errors", "in_flight")
    for rep in reports:
        # Counters are cumulative per shard: a shard contributes its last snapshot of each second
        # (the final snapshot can share a second with a periodic one); windows add up.
        last: dict[int, dict[str, Any]] = {}
        for snap in rep.snapshots:
            sec = int(np.ceil(snap["t_ns"] / 1e9))
            row = by_sec.setdefault(
                sec, {"t_s": sec, "issued": 0, "completed": 0, "errors": 0, "in_flight": 0, "window_completed": 0, "hists": [], "late": []}
            )
            row["window_completed"] += int(snap.get("window_completed", 0))
            last[sec] = snap
            if "latency_hist" in snap:
                row["hists"].append(Histogram.from_dict(snap["latency_hist"]))
                row["late"].append(Histogram.from_dict(snap["lateness_hist"]))
        for sec, snap in last.items():
            for k in cumulative:
                by_sec[sec][k] += int(snap.get(k, 0))
    out = []
    for sec in sorted(by_sec):
        row = by_sec[sec]
        hists, late = row.pop("hists"), row.pop("late")
        if hists:
            h = merge_all(hists)
            lh = merge_all(late)
            row.update(p50_ns=h.percentile(0.5), p99_ns=h.percentile(0.99), lateness_p99_ns=lh.percentile(0.99))
        out.append(row)
    return out
