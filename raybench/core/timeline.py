"""Views of the shards' own reports: per-shard figures, mergeable histograms, the per-second timeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from raybench.core.histogram import Histogram, merge_all
from raybench.core.records import ShardReport
from raybench.core.tokens import tpot_ns

__all__ = ["merge_timeline", "shard_histograms", "shard_summaries"]

HISTOGRAMS = ("latency", "lateness", "ttft", "tpot")


def _histograms(rep: ShardReport) -> dict[str, Histogram]:
    """Histograms of one shard's records (what a shard contributes to the merge)."""
    r = rep.records
    out = {k: Histogram() for k in HISTOGRAMS}
    ok = (r["error"] == 0) & (r["completed_ns"] > 0) if r else np.zeros(0, bool)
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
        out["tpot"].record_many(np.maximum(tpot_ns(lat[has_ft], ttft, r["n_tokens"][ok][has_ft]), 0))
    return out


def shard_histograms(reports: list[ShardReport]) -> tuple[dict[str, Histogram], list[dict[str, Histogram]]]:
    """The merged histograms of the run and each shard's own."""
    per = [_histograms(rep) for rep in reports]
    return {k: merge_all(h[k] for h in per) for k in HISTOGRAMS}, per


def shard_summaries(reports: list[ShardReport], per: list[dict[str, Histogram]]) -> list[dict[str, Any]]:
    """One dict per shard for ``result.json``: status, counts, latency and lateness p99."""
    out = []
    for rep, h in zip(reports, per, strict=True):
        r = rep.records
        out.append({
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
        })
    return out


def merge_timeline(reports: list[ShardReport]) -> list[dict[str, Any]]:
    """Per-second progress summed over shards (seconds since T0)."""
    by_sec: dict[int, dict[str, Any]] = {}
    cumulative = ("issued", "completed", "errors", "in_flight")
    for rep in reports:
        # Counters are cumulative per shard: a shard contributes its last snapshot of each second
        # (the final snapshot can share a second with a periodic one); windows add up.
        last: dict[int, dict[str, Any]] = {}
        for snap in rep.snapshots:
            sec = int(np.ceil(snap["t_ns"] / 1e9))
            row = by_sec.setdefault(sec, {"t_s": sec, "issued": 0, "completed": 0, "errors": 0, "in_flight": 0,
                                          "window_completed": 0, "hists": [], "late": []})
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
            h, lh = merge_all(hists), merge_all(late)
            row.update(p50_ns=h.percentile(0.5), p99_ns=h.percentile(0.99), lateness_p99_ns=lh.percentile(0.99))
        out.append(row)
    return out
