"""Views of the shards' own reports: per-shard figures and the per-second timeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from raybench.core.records import ShardReport

__all__ = ["merge_timeline", "shard_summaries"]


def shard_summaries(reports: list[ShardReport]) -> list[dict[str, Any]]:
    """One dict per shard for ``result.json``: status, counts, latency and lateness p99."""
    out = []
    for rep in reports:
        st = rep.stats
        out.append({
            "shard": rep.shard,
            "node": rep.node,
            "status": rep.status,
            "failure": rep.failure,
            "end_reason": rep.end_reason,
            "queries_issued": rep.queries_issued,
            "samples_issued": st.samples_issued,
            "samples_completed": st.samples_ok,
            "errors": st.samples_failed,
            "lateness_p99_ns": st.lateness.percentile(0.99) if st.lateness.count else 0,
            "latency_p99_ns": st.latency.percentile(0.99) if st.latency.count else 0,
        })
    return out


def merge_timeline(reports: list[ShardReport]) -> list[dict[str, Any]]:
    """Per-second progress over all shards (seconds since T0).

    Counters are summed (each shard contributes its last snapshot of each second: they are
    cumulative); ``p50_ns``, ``p99_ns`` and ``lateness_p99_ns`` are the largest of the shards'
    window values, an upper bound on the merged window's percentile.
    """
    parts = [rep.snapshots for rep in reports if rep.snapshots and len(rep.snapshots["t_ns"])]
    if not parts:
        return []
    secs = [np.ceil(p["t_ns"] / 1e9).astype(np.int64) for p in parts]
    # Cumulative counters: each shard's last snapshot of each second.
    last = [np.append(s[1:] != s[:-1], True) for s in secs]
    sec_all = np.concatenate(secs)
    uniq, inv = np.unique(sec_all, return_inverse=True)
    out: dict[str, np.ndarray] = {}
    for k in ("issued", "completed", "errors", "in_flight"):
        vals = np.concatenate([np.where(m, p[k], 0) for p, m in zip(parts, last, strict=True)])
        out[k] = np.bincount(inv, weights=vals, minlength=uniq.size)
    out["window_completed"] = np.bincount(inv, weights=np.concatenate([p["window_completed"] for p in parts]),
                                          minlength=uniq.size)
    rows = [{"t_s": int(sec), **{k: int(out[k][i]) for k in ("issued", "completed", "errors", "in_flight",
                                                               "window_completed")}} for i, sec in enumerate(uniq)]
    for k in ("p50_ns", "p99_ns", "lateness_p99_ns"):
        top = np.full(uniq.size, -1, dtype=np.int64)
        np.maximum.at(top, inv, np.concatenate([p[k] for p in parts]))
        for row, v in zip(rows, top.tolist(), strict=True):
            if v >= 0:
                row[k] = v
    return rows
