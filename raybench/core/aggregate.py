"""The merged measurements of a run: what every verdict and metric is computed from.

:class:`RunStats` is the seam between measuring and judging. The scenarios' rules
(:mod:`raybench.core.scenarios`) and :func:`raybench.core.metrics.compute_metrics` read only
this; it is built from the shards' records by :func:`stats_from_reports` (exact order statistics,
LoadGen's ``sorted[int(n * p)]``).

Definitions (times relative to T0 on each shard's own monotonic clock):

* latency = completed - intended, over samples that completed without error;
* lateness = issued - intended (how late the harness sent), same samples;
* TTFT = first token - intended; TPOT: :func:`raybench.core.tokens.tpot_ns`;
* MultiStream query latency = completion of the query - its scheduled time;
* the *final query* is the last scheduled one (Server) or the last issued one (others), as in
  LoadGen; its scheduled, issued and completion times feed the throughput and duration rules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from raybench.core.records import ShardReport, concat_records
from raybench.core.stats import ExactStats, LatencyStats
from raybench.core.tokens import tpot_ns

__all__ = ["RunStats", "stats_from_reports"]


@dataclass
class RunStats:
    """Merged latency statistics and exact counters of one run.

    Attributes:
        latency / lateness / ttft / tpot / itl / query_latency: order statistics (``None`` when
            the run has no such values: no tokens, not MultiStream).
        samples_issued / samples_ok / samples_failed: sample counts.
        errors: failure reason -> samples.
        queries_issued: queries sent to the SUT (LoadGen's ``result_query_count``).
        total_tokens: output tokens of successful samples.
        final_scheduled_ns / final_issued_ns / final_done_ns: the final query's times.
        last_done_ns: the last completion of any sample (the run's duration).
        over_bound: exact ``(metric, bound) -> count of values > bound`` where known.
    """

    latency: LatencyStats
    lateness: LatencyStats
    samples_issued: int = 0
    samples_ok: int = 0
    samples_failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    queries_issued: int = 0
    total_tokens: int = 0
    final_scheduled_ns: int = 0
    final_issued_ns: int = 0
    final_done_ns: int = 0
    last_done_ns: int = 0
    query_latency: LatencyStats | None = None
    ttft: LatencyStats | None = None
    tpot: LatencyStats | None = None
    itl: LatencyStats | None = None
    over_bound: dict[tuple[str, int], int] = field(default_factory=dict)

    def count_over(self, metric: str, bound: int) -> int:
        """Values of ``metric`` strictly above ``bound`` (exact)."""
        known = self.over_bound.get((metric, int(bound)))
        if known is not None:
            return known
        stats = getattr(self, metric)
        return int(stats.count_above(int(bound))) if stats is not None else 0

    def percentile_over(self, metric: str, p: float, bound: int) -> bool:
        """Whether LoadGen's ``p``-percentile of ``metric`` exceeds ``bound``, decided exactly.

        ``sorted[k] > bound`` with ``k = min(int(n * p), n - 1)`` holds iff at least ``n - k``
        values exceed the bound, so the answer needs only the exact over-bound count.
        """
        stats = getattr(self, metric)
        n = stats.count if stats is not None else 0
        if not n:
            return False
        return self.count_over(metric, bound) >= n - min(int(n * p), n - 1)


def _exact(values: np.ndarray) -> ExactStats:
    return ExactStats(np.maximum(values, 0))


def stats_from_reports(reports: list[ShardReport], *, final_by_schedule: bool, samples_per_query: int,
                       query_latency: bool) -> RunStats:
    """Exact :class:`RunStats` from the shards' records (concatenated, then sorted once)."""
    recs = concat_records([r.records for r in reports])
    errors: Counter[str] = Counter()
    for rep in reports:
        codes = rep.records.get("error") if rep.records else None
        if codes is not None and len(codes):
            vals, counts = np.unique(codes[codes > 0], return_counts=True)
            for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
                errors[rep.errors[v - 1]] += c
    ok = (recs["completed_ns"] > 0) & (recs["error"] == 0)
    n_issued = int(recs["query_id"].shape[0])
    lat = (recs["completed_ns"] - recs["intended_ns"])[ok]
    st = RunStats(
        latency=_exact(lat),
        lateness=_exact((recs["issued_ns"] - recs["intended_ns"])[ok]),
        samples_issued=n_issued,
        samples_ok=int(ok.sum()),
        samples_failed=int((recs["error"] > 0).sum()),
        errors=errors,
        queries_issued=sum(r.queries_issued for r in reports),
        last_done_ns=int(recs["completed_ns"].max()) if n_issued else 0,
    )
    if n_issued:
        if final_by_schedule:
            last = int(np.lexsort((recs["seq_id"], recs["intended_ns"]))[-1])
        else:
            last = int(np.argmax(recs["issued_ns"]))
        st.final_scheduled_ns = int(recs["intended_ns"][last])
        st.final_issued_ns = int(recs["issued_ns"][last])
        st.final_done_ns = int(recs["completed_ns"][last])
    tokens = recs["n_tokens"][ok].astype(np.int64)
    st.total_tokens = int(tokens.sum())
    ft = recs["first_token_ns"][ok]
    has_ft = ft > 0
    if has_ft.any():
        ttft = ft[has_ft] - recs["intended_ns"][ok][has_ft]
        st.ttft = _exact(ttft)
        st.tpot = _exact(tpot_ns(lat[has_ft], ttft, tokens[has_ft]))
    gaps = [r.token_gaps_ns for r in reports if r.token_gaps_ns is not None]
    if gaps:
        st.itl = ExactStats(np.concatenate(gaps))
    if query_latency and n_issued:
        st.query_latency = _query_latencies(reports, samples_per_query)
    return st


def _query_latencies(reports: list[ShardReport], spq: int) -> ExactStats:
    """Per-query latencies: a query's rows are contiguous within its shard's records."""
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
    return ExactStats(np.concatenate(q_lat) if q_lat else np.zeros(0, np.int64))
