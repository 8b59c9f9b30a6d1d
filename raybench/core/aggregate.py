"""What a run measured, as mergeable data: the seam between measuring and judging.

Each shard folds its completed queries into a :class:`RunStats` as it goes (once a second, and at
the end): HDR histograms (3 significant digits, relative error <= 1/2048) for latency, lateness,
MultiStream query latency, TTFT, TPOT and inter-token gaps, plus the exact counters the verdicts
need. Shards ship these, never their records; the coordinator merges them (``merge_into``, order
does not matter), so its memory does not grow with the length of the run. The scenarios' rules
(:mod:`raybench.core.scenarios`) and :func:`raybench.core.metrics.compute_metrics` read only this.

Exactness: counts, sums, min, max and mean are exact; percentiles are within the histogram's
relative error. Verdicts stay exact because the latency bounds are known before the run: each
shard counts the values above every bound (:attr:`RunStats.over_bound`), and "the p-th
percentile exceeds the bound" is decided from that count (:meth:`RunStats.percentile_over`).

Definitions (times relative to T0 on each shard's own monotonic clock):

* latency = completed - intended, over samples that completed without error;
* lateness = issued - intended (how late the harness sent), same samples;
* TTFT = first token - intended; TPOT: :func:`raybench.core.tokens.tpot_ns`;
* MultiStream query latency = completion of the query - its scheduled time;
* input / output tokens: per sample, from the SUT (the server's ``usage``) or the workload's
  tokenizer; finish reasons are counted per reason (exact);
* goodput: the SLOs (:attr:`RunStats.slo`, known before the run) are checked on every successful
  sample as it is folded; ``slo_met`` counts the samples that met every SLO, ``slo_met_tokens``
  their output tokens (exact, not read from histograms). A sample meets ``ttft`` when it streamed
  a first token with TTFT <= the SLO; ``tpot`` when it streamed and its TPOT <= the SLO (a sample
  with one output token has no TPOT and meets it); ``e2el`` when latency <= the SLO;
* end-to-end interactivity (MLPerf Endpoints): ``total_tokens / (latency_sum_ns / 1e9)``, the
  output tokens of every successful request (or turn) over the sum of their end-to-end times;
* conversations (multi-turn closed loop): a conversation's latency is the completion of its last
  turn - the intended send of its first (think times included);
* the *final query* is the last scheduled one (Server) or the last issued one (others), as in
  LoadGen; its scheduled, issued and completion times feed the throughput and duration rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from raybench.core.histogram import Histogram
from raybench.core.tokens import meets_slo, tpot_ns

__all__ = ["HISTOGRAMS", "RELATIVE_ERROR", "SLO_METRICS", "RunStats", "merge_stats"]

#: The histograms a run keeps, by name.
HISTOGRAMS = ("latency", "lateness", "query_latency", "ttft", "tpot", "itl", "loop_lag", "overhead",
              "input_tokens", "output_tokens", "conversation")
#: The SLO names goodput understands (values in ns).
SLO_METRICS = ("ttft", "tpot", "e2el")
#: Largest relative error of a reported percentile (HDR bucket midpoint; min and max are exact).
RELATIVE_ERROR = 1.0 / 2048


@dataclass
class RunStats:
    """Merged latency histograms and exact counters of one shard, or of a whole run.

    Attributes:
        latency / lateness / query_latency / ttft / tpot / itl: histograms (empty when the run
            has no such values).
        loop_lag: how late the shard's event loop ran a timer that should have fired every 10 ms
            (a harness that cannot keep its queries moving shows here in any scenario).
        overhead: what the harness and the transport added to each sample's latency: latency
            minus the time inside the SUT (measured where the SUT runs).
        samples_issued / samples_ok / samples_failed: sample counts.
        errors: failure reason -> samples.
        queries_issued: queries sent to the SUT (LoadGen's ``result_query_count``).
        total_tokens: output tokens of successful samples.
        final: the final query as ``(key, key2, scheduled, issued, completed)`` (``None`` if none).
        last_done_ns: the last completion of any sample (the run's duration).
        bounds: metric -> latency bound known before the run (e.g. ``{"latency": 80_000_000}``).
        over_bound: metric -> values strictly above its bound (exact).
        by_schedule: the final query is the last scheduled one (Server) rather than the last issued.
        input_tokens / output_tokens: per-sample token counts of successful samples (histograms).
        conversation: latency of each completed conversation (multi-turn).
        total_input_tokens: input tokens of successful samples.
        finish_reasons: finish reason -> successful samples (exact).
        latency_sum_ns: the sum of the latencies of successful samples (end-to-end interactivity).
        slo: SLO name (``ttft``, ``tpot``, ``e2el``) -> bound in ns, known before the run.
        slo_met / slo_met_tokens: successful samples that met every SLO, and their output tokens.
        conversations_ok / conversations_failed: conversations whose turns all succeeded / not.
    """

    latency: Histogram = field(default_factory=Histogram)
    lateness: Histogram = field(default_factory=Histogram)
    query_latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    tpot: Histogram = field(default_factory=Histogram)
    itl: Histogram = field(default_factory=Histogram)
    loop_lag: Histogram = field(default_factory=Histogram)
    overhead: Histogram = field(default_factory=Histogram)
    input_tokens: Histogram = field(default_factory=Histogram)
    output_tokens: Histogram = field(default_factory=Histogram)
    conversation: Histogram = field(default_factory=Histogram)
    samples_issued: int = 0
    samples_ok: int = 0
    samples_failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    queries_issued: int = 0
    total_tokens: int = 0
    final: tuple[int, int, int, int, int] | None = None
    last_done_ns: int = 0
    bounds: dict[str, int] = field(default_factory=dict)
    over_bound: dict[str, int] = field(default_factory=dict)
    by_schedule: bool = False
    total_input_tokens: int = 0
    finish_reasons: Counter[str] = field(default_factory=Counter)
    latency_sum_ns: int = 0
    slo: dict[str, int] = field(default_factory=dict)
    slo_met: int = 0
    slo_met_tokens: int = 0
    conversations_ok: int = 0
    conversations_failed: int = 0

    # ------------------------------------------------------------------ reading
    @property
    def final_scheduled_ns(self) -> int:
        return self.final[2] if self.final else 0

    @property
    def final_issued_ns(self) -> int:
        return self.final[3] if self.final else 0

    @property
    def final_done_ns(self) -> int:
        return self.final[4] if self.final else 0

    def count_over(self, metric: str, bound: int) -> int:
        """Values of ``metric`` strictly above ``bound``: exact for the run's own bounds."""
        if self.bounds.get(metric) == int(bound):
            return self.over_bound.get(metric, 0)
        return int(getattr(self, metric).count_above(int(bound)))

    def percentile_over(self, metric: str, p: float, bound: int) -> bool:
        """Whether LoadGen's ``p``-percentile of ``metric`` exceeds ``bound``, decided exactly.

        ``sorted[k] > bound`` with ``k = min(int(n * p), n - 1)`` holds iff at least ``n - k``
        values exceed the bound, so the answer needs only the exact over-bound count.
        """
        n = getattr(self, metric).count
        if not n:
            return False
        return self.count_over(metric, bound) >= n - min(int(n * p), n - 1)

    # ------------------------------------------------------------------ merging
    def merge_into(self, other: RunStats) -> None:
        """Add ``other`` (another shard's stats) into this one."""
        for name in HISTOGRAMS:
            getattr(self, name).merge_into(getattr(other, name))
        self.samples_issued += other.samples_issued
        self.samples_ok += other.samples_ok
        self.samples_failed += other.samples_failed
        self.errors.update(other.errors)
        self.queries_issued += other.queries_issued
        self.total_tokens += other.total_tokens
        if other.final is not None and (self.final is None or other.final[:2] > self.final[:2]):
            self.final = other.final
        self.last_done_ns = max(self.last_done_ns, other.last_done_ns)
        if not self.bounds:
            self.bounds, self.by_schedule = dict(other.bounds), other.by_schedule
        for k, v in other.over_bound.items():
            self.over_bound[k] = self.over_bound.get(k, 0) + v
        self.total_input_tokens += other.total_input_tokens
        self.finish_reasons.update(other.finish_reasons)
        self.latency_sum_ns += other.latency_sum_ns
        if not self.slo:
            self.slo = dict(other.slo)
        self.slo_met += other.slo_met
        self.slo_met_tokens += other.slo_met_tokens
        self.conversations_ok += other.conversations_ok
        self.conversations_failed += other.conversations_failed

    # ------------------------------------------------------------------ folding records
    def fold(self, cols: Mapping[str, np.ndarray], first_rows: Sequence[int], sizes: Sequence[int],
             error_names: Sequence[str], query_latency: bool = False,
             window: tuple[Histogram, Histogram] | None = None, finish_names: Sequence[str] = ()) -> None:
        """Fold completed queries into the statistics.

        Args:
            cols: the shard's record columns (:data:`raybench.core.records.COLUMNS`).
            first_rows / sizes: each completed query's first row and number of samples (a
                query's rows are contiguous).
            error_names: ``error_names[code - 1]`` is the reason of error code ``code``.
            query_latency: also fold per-query latencies (MultiStream).
            window: also record latency and lateness into these two histograms (a progress window).
            finish_names: ``finish_names[code - 1]`` is the finish reason of finish code ``code``.
        """
        if not len(first_rows):
            return
        first = np.asarray(first_rows, dtype=np.int64)
        n = np.asarray(sizes, dtype=np.int64)
        rows = np.repeat(first - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(int(n.sum()))
        done, intended = cols["completed_ns"][rows], cols["intended_ns"][rows]
        issued, err = cols["issued_ns"][rows], cols["error"][rows]
        self._fold_final(cols, rows, intended, issued, done)
        self.last_done_ns = max(self.last_done_ns, int(done.max()))
        bad = err > 0
        if bad.any():
            codes, counts = np.unique(err[bad], return_counts=True)
            for c, k in zip(codes.tolist(), counts.tolist(), strict=True):
                self.errors[error_names[c - 1]] += k
        self.samples_failed += int(bad.sum())
        ok = (done > 0) & ~bad
        self.samples_ok += int(ok.sum())
        lat_raw = (done - intended)[ok]
        lat = np.maximum(lat_raw, 0)
        self._record("latency", lat)
        sut = cols["sut_ns"][rows][ok]
        timed = sut > 0
        self.overhead.record_many(np.maximum(lat_raw[timed] - sut[timed], 0))
        late = np.maximum((issued - intended)[ok], 0)
        self.lateness.record_many(late)
        if window is not None:
            window[0].record_many(lat)
            window[1].record_many(late)
        tokens = cols["n_tokens"][rows][ok].astype(np.int64)
        self.total_tokens += int(tokens.sum())
        self.latency_sum_ns += int(lat.sum())
        if tokens.any():
            self.output_tokens.record_many(tokens[tokens > 0])
        self._fold_inputs(cols, rows, ok, finish_names)
        ft = cols["first_token_ns"][rows][ok]
        has = ft > 0
        if has.any():
            ttft_raw = ft[has] - intended[ok][has]
            self._record("ttft", np.maximum(ttft_raw, 0))
            self._record("tpot", np.maximum(tpot_ns(lat_raw[has], ttft_raw, tokens[has]), 0))
        if self.slo:
            self._fold_slo(lat, np.where(has, ft - intended[ok], -1), tokens)
        if query_latency:
            starts = np.concatenate([[0], np.cumsum(n)[:-1]])
            q_bad = np.logical_or.reduceat(bad | (done == 0), starts)
            q_lat = np.maximum.reduceat(done, starts) - intended[starts]
            self._record("query_latency", np.maximum(q_lat[~q_bad], 0))

    def _fold_inputs(self, cols: Mapping[str, np.ndarray], rows: np.ndarray, ok: np.ndarray,
                     finish_names: Sequence[str]) -> None:
        """Input tokens and finish reasons of the successful samples."""
        if "n_input" in cols:
            isl = cols["n_input"][rows][ok].astype(np.int64)
            if isl.any():
                self.total_input_tokens += int(isl.sum())
                self.input_tokens.record_many(isl[isl > 0])
        if "finish" in cols and finish_names:
            fin = cols["finish"][rows][ok]
            fin = fin[fin > 0]
            if fin.size:
                codes, counts = np.unique(fin, return_counts=True)
                for c, k in zip(codes.tolist(), counts.tolist(), strict=True):
                    self.finish_reasons[finish_names[c - 1]] += k

    def _fold_slo(self, lat: np.ndarray, ttft: np.ndarray, tokens: np.ndarray) -> None:
        """Count the successful samples meeting every SLO (``ttft`` is -1 where none streamed)."""
        met = meets_slo(lat, ttft, tokens, self.slo)
        self.slo_met += int(met.sum())
        self.slo_met_tokens += int(tokens[met].sum())

    def fold_gaps(self, gaps: Iterable[np.ndarray]) -> None:
        """Fold streamed inter-token gaps."""
        parts = [g for g in gaps if g.size]
        if parts:
            self.itl.record_many(np.concatenate(parts))

    def _record(self, metric: str, values: np.ndarray) -> None:
        getattr(self, metric).record_many(values)
        bound = self.bounds.get(metric)
        if bound is not None and values.size:
            self.over_bound[metric] = self.over_bound.get(metric, 0) + int((values > bound).sum())

    def _fold_final(self, cols: Mapping[str, np.ndarray], rows: np.ndarray, intended: np.ndarray,
                    issued: np.ndarray, done: np.ndarray) -> None:
        if self.by_schedule:  # the latest scheduled; among equal times, the highest seq_id
            seq = cols["seq_id"][rows]
            latest = np.flatnonzero(intended == intended.max())
            last = int(latest[np.argmax(seq[latest])])
            key = (int(intended[last]), int(seq[last]))
        else:
            last = int(np.argmax(issued))
            key = (int(issued[last]), 0)
        if self.final is None or key > self.final[:2]:
            self.final = (*key, int(intended[last]), int(issued[last]), int(done[last]))


def merge_stats(parts: Iterable[RunStats]) -> RunStats:
    """One :class:`RunStats` holding every part (order does not matter)."""
    out = RunStats()
    for p in parts:
        out.merge_into(p)
    return out
