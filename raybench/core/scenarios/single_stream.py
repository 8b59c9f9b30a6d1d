"""SingleStream: one query of one sample at a time; the next is sent when the previous completes.

* Effective: ``target_qps = 1e9 / single_stream_expected_latency_ns`` (it only sizes the generated
  query set), percentile ``single_stream_target_latency_percentile``, one query in flight. With
  equal issue (``sample_concatenate_permutation``) ``min_query_count`` becomes
  ``max(min_query_count, int(2 * min_duration_s * target_qps))`` plus
  ``performance_sample_count - that % performance_sample_count`` (LoadGen 6.0.17).
* Plan: queries at the fixed period ``1 / target_qps`` while the previous one is before
  ``2 x min_duration`` or fewer than ``min_query_count`` exist; serial, so one shard.
* Issuing: the next query goes out as soon as the previous completes; issuing stops once both
  ``min_query_count`` queries and ``min_duration`` are reached (checked after each issue, with that
  query's issue time, as LoadGen does).
* Throughput: QPS with loadgen overhead = ``(n - 1) / issue time of the final query``; without =
  ``1 / mean latency``.
* Min duration: the final query's issue time ``>= min_duration``.
* Early stopping: the latency percentile estimate (plus LoadGen's p99 estimate for MultiStream
  inference, ``early_stopping_latency_ms``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from raybench.core.early_stopping import EarlyStoppingResult, latency_early_stopping
from raybench.core.plan import Phase
from raybench.core.plan_stream import ScheduleSpec
from raybench.core.scenarios.base import Effective, Scenario, Throughput
from raybench.core.scenarios.server import build_scheduled_phase
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.loadgen import ShardRunner
    from raybench.core.plan import PhaseSlice, Plan

__all__ = ["SerialScenario", "SingleStream", "issue_serial"]


async def issue_serial(runner: ShardRunner, phase_i: int, phase: PhaseSlice) -> None:
    """Serial issuing (SingleStream, MultiStream): one query in flight, LoadGen's stop rule."""
    eff = runner.effective
    perf = not eff.accuracy
    min_dur = eff.min_duration_ms * 1_000_000
    for q in range(phase.query_count):
        if runner.stopped:
            return
        now = runner.now()
        await asyncio.gather(runner.spawn(phase_i, phase, q, now), return_exceptions=True)
        # LoadGen checks the stop conditions after each issue, with that query's issue time.
        if perf and runner.issued_queries >= eff.min_query_count and now >= min_dur:
            runner.request_stop("min duration and min queries met")
        if runner.check_limits(now):
            return
    if perf and not runner.stopped:
        runner.request_stop("ran out of generated queries")


class SerialScenario(Scenario):
    """What SingleStream and MultiStream share: a periodic plan over ``2 x min_duration`` at the
    expected rate, one query in flight, one shard."""

    serial: ClassVar[bool] = True
    DURATION_HINT: ClassVar[str] = "Decrease the expected latency so the loadgen pre-generates more queries."

    def build_phase(self, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                    sample_rng: np.random.Generator, seq_base: int) -> Phase:
        return build_scheduled_phase(self, s, eff, loaded, set_index, sample_rng, seq_base,
                                     2 * eff.target_duration_ms * 1_000_000,
                                     ScheduleSpec("periodic", eff.target_qps))

    async def issue(self, runner: ShardRunner, phase_i: int, phase: PhaseSlice, start_ns: int) -> None:
        await issue_serial(runner, phase_i, phase)


class SingleStream(SerialScenario):
    """MLPerf SingleStream (see the module docstring for every rule)."""

    name: Literal["SingleStream"] = "SingleStream"
    expected_latency_ns: float | None = None
    target_latency_percentile: float | None = None

    SETTINGS: ClassVar[dict[str, str]] = {
        "expected_latency_ns": "single_stream_expected_latency_ns",
        "target_latency_percentile": "single_stream_target_latency_percentile",
    }
    REQUESTED: ClassVar[tuple[str, ...]] = ("single_stream_expected_latency_ns", "single_stream_target_latency_percentile")

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        qps = 1e9 / s.single_stream_expected_latency_ns
        mqc = base.min_query_count
        if s.sample_concatenate_permutation:
            psc = base.performance_sample_count
            mqc = max(mqc, int(2.0 * (base.target_duration_ms / 1000.0) * qps))
            mqc += psc - mqc % psc
        return {"target_qps": qps, "target_latency_percentile": float(s.single_stream_target_latency_percentile),
                "min_query_count": mqc, "min_sample_count": mqc}

    def rate_setting(self) -> str:
        return "single_stream_expected_latency_ns"

    def throughput(self, st: RunStats) -> Throughput:
        n, issued = st.latency.count, st.final_issued_ns / 1e9
        return Throughput(
            samples_per_second=(n - 1) / issued if issued > 0 and n > 1 else 0.0,
            tokens_per_second=st.total_tokens / issued if issued > 0 and st.total_tokens else None,
        )

    def early_stopping(self, st: RunStats, plan: Plan) -> list[tuple[str, EarlyStoppingResult]]:
        # LoadGen also estimates p99 from SingleStream (to infer MultiStream on edge systems).
        p = plan.effective.target_latency_percentile
        return [("latency", latency_early_stopping(st.latency, p, multistream_percentile=0.99))]
