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
    by_sec: dict[int, dict[str, Any]] = {}
    for rep in reports:
        snaps = rep.snapshots
        if not snaps or not len(snaps["t_ns"]):
            continue
        secs = np.ceil(snaps["t_ns"] / 1e9).astype(np.int64)
        last_of_sec = np.flatnonzero(np.append(secs[1:] != secs[:-1], True))
        for i, sec in enumerate(secs.tolist()):
            row = by_sec.setdefault(sec, {"t_s": sec, "issued": 0, "completed": 0, "errors": 0, "in_flight": 0,
                                          "window_completed": 0})
            row["window_completed"] += int(snaps["window_completed"][i])
            for k in ("p50_ns", "p99_ns", "lateness_p99_ns"):
                v = int(snaps[k][i])
                if v >= 0:
                    row[k] = max(row.get(k, 0), v)
        for i in last_of_sec.tolist():  # cumulative counters: the last snapshot of each second
            row = by_sec[int(secs[i])]
            for k in ("issued", "completed", "errors", "in_flight"):
                row[k] += int(snaps[k][i])
    return [by_sec[sec] for sec in sorted(by_sec)]
