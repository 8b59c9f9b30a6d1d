"""Offline: every sample in one query, issued at T0; the SUT may batch as it likes.

* Effective: ``target_qps = offline_expected_qps``; the single query holds
  ``max(min_query_count, int(1.1 * min_duration_s * target_qps))`` samples (LoadGen's kSlack 1.1;
  ``performance_sample_count`` with ``performance_issue_unique``); then ``min_query_count = 1``
  and ``target_duration = 0``.
* Plan: the loaded set repeated in order, plus a remainder (equal issue: each repetition shuffled
  and the count padded to whole repetitions); accuracy mode: every loaded sample once, shuffled.
  Each shard issues a contiguous range of the single query's samples; in performance mode it
  regenerates that range itself (the driver keeps only the count).
* Issuing: the shard cuts its range into batches of ``sut.max_batch`` samples with at most
  ``sut.max_inflight`` batches outstanding.
* Throughput: samples/s = ``n / max latency``; tokens/s = ``tokens / max latency``.
* Min duration: the max latency (the last completion) ``>= min_duration``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from raybench.core.plan import Phase, PhaseSlice, equal_issue_count, make_slice
from raybench.core.plan_stream import PhaseSource
from raybench.core.scenarios.base import Effective, Scenario, Throughput
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.loadgen import ShardRunner
    from raybench.core.plan import Plan, ShardSlice

__all__ = ["Offline"]

_KSLACK = 1.1  # LoadGen's kSlack: enough samples for the SUT to outlast min_duration
_DEFAULT_INFLIGHT = 256


class Offline(Scenario):
    """MLPerf Offline (see the module docstring for every rule)."""

    name: Literal["Offline"] = "Offline"
    expected_qps: float | None = None

    SETTINGS: ClassVar[dict[str, str]] = {"expected_qps": "offline_expected_qps"}
    REQUESTED: ClassVar[tuple[str, ...]] = ("offline_expected_qps",)
    DURATION_HINT: ClassVar[str] = "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        qps = float(s.offline_expected_qps)
        if s.performance_issue_unique:
            spq = base.performance_sample_count
        else:
            spq = max(base.min_query_count, int(_KSLACK * (base.min_duration_ms / 1000.0) * qps))
        return {"target_qps": qps, "samples_per_query": spq, "min_query_count": 1, "min_sample_count": spq,
                "target_duration_ms": 0}

    def plan_size(self, eff: Effective) -> tuple[float, float]:
        return float(eff.samples_per_query), eff.samples_per_query / eff.target_qps

    def rate_setting(self) -> str:
        return "offline_expected_qps"

    def build_phase(self, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                    sample_rng: np.random.Generator, seq_base: int) -> Phase:
        if eff.accuracy:  # every loaded sample once: held
            samples = loaded[sample_rng.permutation(loaded.shape[0])].copy()
            return Phase(loaded, np.zeros(1, dtype=np.int64), samples, int(samples.shape[0]), seq_base)
        # performance: streamed (each shard regenerates its range of the single query)
        m, n = int(loaded.shape[0]), eff.samples_per_query
        if s.performance_issue_same:
            mode = "same"
        elif s.sample_concatenate_permutation:  # shuffled passes, padded to whole passes
            mode, n = "equal", equal_issue_count(n, m)
        else:  # the loaded set repeated in order, then a remainder
            mode = "cyclic"
        src = PhaseSource(None, 1, n, mode, loaded, m, seed=int(s.sample_index_rng_seed),
                          same_index=int(s.performance_issue_same_index), seq_base=seq_base)
        return Phase(loaded, samples_per_query=n, seq_base=seq_base, source=src, last_intended_ns=0)

    def partition(self, plan: Plan, shards: int) -> list[ShardSlice]:
        """Shard k issues samples ``[n*k/S, n*(k+1)/S)`` of the single query of every phase."""
        out = []
        for k in range(shards):
            phases = []
            for p in plan.phases:
                n = p.sample_count
                lo, hi = (n * k) // shards, (n * (k + 1)) // shards
                if p.source is not None:
                    phases.append(PhaseSlice(p.loaded_set, samples_per_query=hi - lo, seq_base=p.seq_base,
                                             source=p.source, shard=k, shards=shards, lo=lo, hi=hi))
                    continue
                mask = p.log_accuracy[lo:hi] if p.log_accuracy is not None else None
                phases.append(PhaseSlice(p.loaded_set, np.array([lo], np.int64), np.zeros(1, np.int64),
                                         p.samples[lo:hi], hi - lo, p.seq_base, mask))
            out.append(make_slice(plan, k, shards, phases))
        return out

    async def issue(self, runner: ShardRunner, phase_i: int, phase: PhaseSlice, start_ns: int) -> None:
        sut = runner.sut
        batch = max(1, int(getattr(sut, "max_batch", 1) or 1))
        sem = asyncio.Semaphore(int(getattr(sut, "max_inflight", 0) or 0) or _DEFAULT_INFLIGHT)
        for b0 in range(0, int(phase.samples.shape[0]), batch):
            await sem.acquire()
            if runner.stopped or runner.check_limits(runner.now()):
                sem.release()
                return
            task = runner.spawn_batch(phase_i, phase, b0, min(batch, int(phase.samples.shape[0]) - b0), start_ns)
            task.add_done_callback(lambda _t: sem.release())

    def queries_issued(self, st: RunStats, plan: Plan) -> int:
        """LoadGen counts the single query once per phase."""
        return len(plan.phases) if st.samples_issued else 0

    def throughput(self, st: RunStats) -> Throughput:
        max_s = st.latency.max / 1e9 if st.latency.count else 0.0
        return Throughput(
            samples_per_second=st.latency.count / max_s if max_s > 0 else 0.0,
            tokens_per_second=st.total_tokens / max_s if max_s > 0 and st.total_tokens else None,
        )

    def duration_s(self, st: RunStats) -> float:
        return st.latency.max / 1e9 if st.latency.count else 0.0

