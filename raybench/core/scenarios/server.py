"""Server: Poisson arrivals at ``target_qps``; VALID only if the latency percentile holds.

``arrival`` chooses the load shape (default ``poisson``: MLPerf's, unchanged). The others are
raybench's additions for LLM serving studies and make a run non-MLPerf (flagged in the plan's
``meta["arrival"]``, result.json and the warnings): ``constant`` (period ``1/target_qps``),
``gamma`` (gaps with mean ``1/target_qps``, shape ``burstiness``; 1 = Poisson exactly),
``ramp`` (rate linear from ``start_qps`` to ``end_qps`` over ``duration_ms``, then constant),
``trace`` (a dataset's recorded timestamps divided by ``speedup``, each entry sent once). Every
shape is built once from the seed for the whole run and split round-robin over shards, so the
global schedule does not depend on the shard count.

* Effective: ``target_qps = server_target_qps``, latency bound ``server_target_latency_ns`` at
  ``server_target_latency_percentile``, ``max_async_queries = server_max_async_queries``.
* Plan: exponential gaps at ``target_qps`` (``schedule_rng_seed``) while the previous arrival is
  before ``min_duration`` or fewer than ``min_query_count`` queries exist; shards take the global
  order round-robin, so each shard sees the same rate and the union is the schedule.
* Issuing: every query is sent at its scheduled offset from T0, whether or not earlier ones have
  completed; a shard that falls behind sends what is due at once and records the lateness.
* Throughput: completed samples/s = ``(n - 1) / completion time of the final query``; scheduled
  samples/s = ``(n - 1) / scheduled time of the final query`` (the final query is the last
  scheduled one).
* Min duration: the final query's scheduled time ``>= min_duration``.
* Constraints: the target-percentile latency ``<= target_latency`` (token workloads: TTFT and
  TPOT percentiles under ``server_ttft_latency`` / ``server_tpot_latency``); decided exactly from
  the over-bound counts.
* Early stopping: ``queries_issued >= find_min_passing(t, p) + t`` with ``t`` the over-bound
  queries (token workloads: once for TTFT and once for TPOT).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from raybench.core.arrival import gamma_schedule, ramp_schedule, trace_schedule
from raybench.core.early_stopping import EarlyStoppingResult, server_early_stopping
from raybench.core.plan import Phase, equal_issue_count, periodic_schedule, poisson_schedule, query_samples
from raybench.core.scenarios.base import Effective, Scenario, Throughput, Verdict
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.loadgen import ShardRunner
    from raybench.core.plan import PhaseSlice, Plan

__all__ = ["Arrival", "ConstantArrival", "GammaArrival", "PoissonArrival", "RampArrival", "Server",
           "TraceArrival", "build_scheduled_phase"]


class _ArrivalBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str

    @property
    def mlperf(self) -> bool:
        """Whether the schedule is MLPerf's (LoadGen's Poisson)."""
        return False

    def describe(self) -> dict[str, Any]:
        """What result.json records about a non-MLPerf shape."""
        return {**self.model_dump(mode="json"), "mlperf": self.mlperf,
                "note": "non-MLPerf load shape: not LoadGen's Poisson Server schedule"}


class PoissonArrival(_ArrivalBase):
    """MLPerf Server: exponential gaps at ``target_qps`` (the default)."""

    kind: Literal["poisson"] = "poisson"

    @property
    def mlperf(self) -> bool:
        return True


class ConstantArrival(_ArrivalBase):
    """A fixed period ``1/target_qps`` (truncated to ns), first query at 0."""

    kind: Literal["constant"] = "constant"


class GammaArrival(_ArrivalBase):
    """Gamma gaps, mean ``1/target_qps``, shape ``burstiness`` (vLLM's ``--burstiness``)."""

    kind: Literal["gamma"] = "gamma"
    burstiness: float = Field(1.0, gt=0)

    @property
    def mlperf(self) -> bool:
        return self.burstiness == 1.0  # the very Poisson schedule


class RampArrival(_ArrivalBase):
    """Rate linear from ``start_qps`` to ``end_qps`` (default ``target_qps``) over
    ``duration_ms`` (default ``min_duration_ms``), then ``end_qps``; ``random``: Poisson
    arrivals along the ramp, else evenly spaced in expected count."""

    kind: Literal["ramp"] = "ramp"
    start_qps: float = Field(0.0, ge=0)
    end_qps: float | None = Field(None, gt=0)
    duration_ms: int | None = Field(None, gt=0)
    random: bool = True


class TraceArrival(_ArrivalBase):
    """The dataset's recorded timestamps divided by ``speedup`` (each entry sent once)."""

    kind: Literal["trace"] = "trace"
    speedup: float = Field(1.0, gt=0)


Arrival = Annotated[PoissonArrival | ConstantArrival | GammaArrival | RampArrival | TraceArrival,
                    Field(discriminator="kind")]
"""The ``scenario.arrival`` block of a Server run (``kind`` picks the shape)."""


def build_scheduled_phase(scenario: Scenario, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                          sample_rng: np.random.Generator, seq_base: int, gen_ns: int, schedule: Any) -> Phase:
    """A phase of scheduled queries (Server, SingleStream, MultiStream).

    ``schedule(gen_ns, min_queries) -> (intended_ns, generated_duration_ns)`` produces the
    arrival times; accuracy mode and ``performance_issue_unique`` issue each loaded sample once.
    """
    spq = eff.samples_per_query
    dist_end = int(loaded.shape[0]) - scenario.padding(eff)
    unique = eff.accuracy or s.performance_issue_unique
    min_q = dist_end // spq if unique else eff.min_query_count
    gen = 0 if unique else gen_ns
    equal_issue = bool(s.sample_concatenate_permutation) and not eff.accuracy
    if equal_issue:
        min_q = equal_issue_count(min_q, dist_end)
    intended, gen_dur = schedule(gen, min_q)
    if equal_issue and intended.shape[0] % dist_end:
        # LoadGen bumps min_queries by a whole dataset while the duration is not met, so the
        # final count is a multiple of the loaded-set size.
        intended, gen_dur = schedule(gen, equal_issue_count(int(intended.shape[0]), dist_end))
    samples = query_samples(loaded, dist_end, int(intended.shape[0]), spq, s, sample_rng, unique, equal_issue)
    return Phase(loaded, intended, samples, spq, seq_base, gen_dur)


class Server(Scenario):
    """MLPerf Server (see the module docstring for every rule)."""

    name: Literal["Server"] = "Server"
    target_qps: float | None = None
    target_latency_ns: int | None = None
    target_latency_percentile: float | None = None
    max_async_queries: int | None = None
    ttft_latency_ns: int | None = None
    tpot_latency_ns: int | None = None
    arrival: Arrival | None = None
    """The load shape (``None`` = MLPerf's Poisson, and nothing else in the logs changes)."""

    SETTINGS: ClassVar[dict[str, str]] = {
        "target_qps": "server_target_qps",
        "target_latency_ns": "server_target_latency_ns",
        "target_latency_percentile": "server_target_latency_percentile",
        "max_async_queries": "server_max_async_queries",
        "ttft_latency_ns": "server_ttft_latency",
        "tpot_latency_ns": "server_tpot_latency",
    }
    REQUESTED: ClassVar[tuple[str, ...]] = (
        "server_target_qps", "server_target_latency_ns", "server_target_latency_percentile",
        "server_coalesce_queries", "server_find_peak_qps_decimals_of_precision",
        "server_find_peak_qps_boundary_step_size", "server_max_async_queries", "server_num_issue_query_threads",
    )
    DURATION_HINT: ClassVar[str] = "Increase the target QPS so the loadgen pre-generates more queries."

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        return {"target_qps": float(s.server_target_qps), "target_latency_ns": int(s.server_target_latency_ns),
                "target_latency_percentile": float(s.server_target_latency_percentile),
                "max_async_queries": int(s.server_max_async_queries)}

    def plan_size(self, eff: Effective) -> tuple[float, float]:
        qps = eff.target_qps
        if isinstance(self.arrival, RampArrival):  # bounded by the higher end of the ramp
            qps = max(self.arrival.start_qps, self.arrival.end_qps or qps)
        n = max(float(eff.min_query_count), eff.target_duration_ms / 1000.0 * qps)
        return n, n / qps

    def rate_setting(self) -> str:
        return "server_target_qps"

    def build_phase(self, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                    sample_rng: np.random.Generator, seq_base: int, arrival_ns: np.ndarray | None = None) -> Phase:
        a, qps, seed = self.arrival or PoissonArrival(), eff.target_qps, s.schedule_rng_seed

        def schedule(gen: int, min_q: int) -> tuple[np.ndarray, int]:
            if isinstance(a, ConstantArrival):
                return periodic_schedule(qps, gen, min_q)
            if isinstance(a, GammaArrival):
                return gamma_schedule(qps, a.burstiness, seed, set_index, gen, min_q)
            if isinstance(a, RampArrival):
                ramp_ms = a.duration_ms if a.duration_ms is not None else eff.min_duration_ms
                return ramp_schedule(a.start_qps, a.end_qps or qps, ramp_ms * 1_000_000, seed, set_index, gen, min_q,
                                     random=a.random)
            if isinstance(a, TraceArrival):
                if arrival_ns is None:
                    raise ValueError("scenario.arrival: kind 'trace' needs a dataset with timestamps")
                return trace_schedule(arrival_ns, a.speedup)
            return poisson_schedule(qps, seed, set_index, gen, min_q)

        return build_scheduled_phase(self, s, eff, loaded, set_index, sample_rng, seq_base,
                                     eff.target_duration_ms * 1_000_000, schedule)

    def bounds(self, plan: Plan) -> dict[str, int]:
        s = plan.settings
        if s.use_token_latencies:
            return {"ttft": int(s.server_ttft_latency), "tpot": int(s.server_tpot_latency)}
        return {"latency": int(plan.effective.target_latency_ns)}

    def deadline_s(self, plan: Plan, query_timeout_s: float, grace_s: float) -> float | None:
        """max_duration + grace, else the last scheduled send + the query timeout + grace."""
        bound = super().deadline_s(plan, query_timeout_s, grace_s)
        if bound is not None or plan.accuracy_log_all or not plan.query_count:
            return bound
        last = max(int(p.intended_ns[-1]) for p in plan.phases if p.query_count)
        return last / 1e9 + query_timeout_s + grace_s

    async def issue(self, runner: ShardRunner, phase_i: int, phase: PhaseSlice, start_ns: int) -> None:
        clock, base = runner.clock, runner.t0 + start_ns  # offsets below are from the phase start
        intended = phase.intended_list()
        max_async = runner.effective.max_async_queries
        spawn = runner.spawn
        n = len(intended)
        i = 0
        while i < n:
            now = clock.now_ns() - base
            if now < intended[i]:
                await clock.sleep_until(base + intended[i])
                now = clock.now_ns() - base
            while i < n and intended[i] <= now:  # send what is due, catching up if behind
                if runner.check_limits(now + start_ns):
                    return
                if max_async and runner.in_flight > max_async:
                    runner.request_stop("server_max_async_queries exceeded")
                    return
                spawn(phase_i, phase, i, intended[i] + start_ns)
                i += 1
            if i < n:
                await asyncio.sleep(0)  # let completions run between bursts
            if runner.stopped:
                return

    def final_query_by_schedule(self) -> bool:
        return True

    def lateness_checked(self) -> bool:
        return True

    def throughput(self, st: RunStats) -> Throughput:
        n, done, sched = st.latency.count, st.final_done_ns / 1e9, st.final_scheduled_ns / 1e9
        return Throughput(
            samples_per_second=(n - 1) / done if done > 0 and n > 1 else 0.0,
            scheduled_samples_per_second=(n - 1) / sched if sched > 0 and n > 1 else 0.0,
            tokens_per_second=st.total_tokens / done if done > 0 and st.total_tokens else None,
        )

    def duration_s(self, st: RunStats) -> float:
        return st.final_scheduled_ns / 1e9

    def constraints(self, st: RunStats, plan: Plan) -> Verdict:
        v = Verdict()
        eff, s = plan.effective, plan.settings
        p = eff.target_latency_percentile
        if not s.use_token_latencies:
            if st.percentile_over("latency", p, eff.target_latency_ns):
                v.fail(f"latency constraint not met: p{p * 100:g} latency {st.latency.percentile(p) / 1e6:.3f} ms "
                       f"> target {eff.target_latency_ns / 1e6:g} ms", "Reduce target QPS to improve latency.")
            return v
        if not st.ttft.count:
            v.fail("token latencies required but the SUT reported no first token")
            return v
        for metric, label, bound in (("ttft", "TTFT", s.server_ttft_latency), ("tpot", "TPOT", s.server_tpot_latency)):
            stats = getattr(st, metric)
            if stats.count and st.percentile_over(metric, p, bound):
                v.fail(f"{label} constraint not met: p{p * 100:g} {label} {stats.percentile(p) / 1e6:.3f} ms "
                       f"> {bound / 1e6:g} ms", f"{label} constrain not met: Reduce target QPS to improve latency.")
        return v

    def overlatency_count(self, st: RunStats, plan: Plan) -> int:
        """LoadGen's ``result_overlatency_query_count`` (0 for token workloads)."""
        if plan.settings.use_token_latencies:
            return 0
        return st.count_over("latency", plan.effective.target_latency_ns)

    def early_stopping(self, st: RunStats, plan: Plan) -> list[tuple[str, EarlyStoppingResult]]:
        s, p, n = plan.settings, plan.effective.target_latency_percentile, st.queries_issued
        if s.use_token_latencies and st.ttft.count:
            return [("tpot", server_early_stopping(n, st.count_over("tpot", s.server_tpot_latency), p)),
                    ("ttft", server_early_stopping(n, st.count_over("ttft", s.server_ttft_latency), p))]
        return [("latency", server_early_stopping(n, self.overlatency_count(st, plan), p))]
