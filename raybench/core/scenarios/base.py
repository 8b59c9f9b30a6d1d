"""What every scenario shares: LoadGen's effective settings and the scenario interface.

A scenario is a pydantic model (it is also the ``scenario:`` block of a run config) that owns
everything scenario-specific about a run:

* :meth:`Scenario.effective` — LoadGen's ``TestSettingsInternal``, the one place the values a run
  actually uses are derived; the plan, the metrics and the MLPerf logs all read it;
* :meth:`Scenario.build_phase` / :meth:`Scenario.partition` — the seeded queries of one loaded
  set, and how they are split over shards;
* :meth:`Scenario.issue` — the issuing loop a shard runs (on a :class:`~raybench.core.loadgen.ShardRunner`);
* :meth:`Scenario.throughput`, :meth:`Scenario.min_duration`, :meth:`Scenario.constraints`,
  :meth:`Scenario.early_stopping` — its verdict rules, given the merged :class:`RunStats`.

Fields of a scenario model are that scenario's own TestSettings, named without the scenario
prefix (``Server.target_qps`` is ``server_target_qps``); ``None`` keeps the value from the
conf files and ``settings``. A field that another scenario owns is rejected with its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from raybench.core.early_stopping import EarlyStoppingResult
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.loadgen import ShardRunner
    from raybench.core.plan import Phase, PhaseSlice, Plan, ShardSlice

__all__ = ["COMMON_REQUESTED", "Effective", "Scenario", "Throughput", "Verdict"]

#: ``requested_*`` keys every scenario logs after its own, in LoadGen's order.
COMMON_REQUESTED = (
    "min_duration_ms", "max_duration_ms", "min_query_count", "max_query_count", "qsl_rng_seed",
    "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_rng_seed", "accuracy_log_probability",
    "accuracy_log_sampling_target", "print_timestamps", "performance_issue_unique", "performance_issue_same",
    "performance_issue_same_index", "performance_sample_count_override", "accuracy_sample_count_override",
    "sample_concatenate_permutation",
)


@dataclass(frozen=True)
class Effective:
    """LoadGen's ``TestSettingsInternal``: the values a run actually uses.

    Field order is LoadGen's ``LogEffectiveSettings`` order, so :meth:`log_items` writes the
    ``effective_*`` keys exactly as LoadGen 6.0.17 does. ``concurrency`` is raybench's
    (closed loop only) and is logged only for that scenario.
    """

    scenario: str
    mode: str
    samples_per_query: int
    target_qps: float
    target_latency_ns: int
    target_latency_percentile: float
    max_async_queries: int
    target_duration_ms: int
    min_duration_ms: int
    max_duration_ms: int
    min_query_count: int
    max_query_count: int
    min_sample_count: int
    qsl_rng_seed: int
    sample_index_rng_seed: int
    schedule_rng_seed: int
    accuracy_log_rng_seed: int
    accuracy_log_probability: float
    accuracy_log_sampling_target: int
    print_timestamps: bool
    performance_issue_unique: bool
    performance_issue_same: bool
    performance_issue_same_index: int
    performance_sample_count: int
    accuracy_sample_count: int
    sample_concatenate_permutation: bool
    concurrency: int = 0

    @property
    def accuracy(self) -> bool:
        """An accuracy run (every sample once, all responses logged)."""
        return self.mode == "AccuracyOnly"

    def log_items(self) -> dict[str, Any]:
        """``effective_*`` keys and values in LoadGen's order (``mode`` is logged as ``test_mode``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "concurrency":
                continue
            out["effective_" + ("test_mode" if f.name == "mode" else f.name)] = getattr(self, f.name)
        if self.scenario == "Concurrency":
            out["effective_target_concurrency"] = self.concurrency
        return out


@dataclass(frozen=True)
class Throughput:
    """A scenario's throughput figures (samples/s and tokens/s; ``None`` where not defined)."""

    samples_per_second: float
    scheduled_samples_per_second: float | None = None
    tokens_per_second: float | None = None


@dataclass
class Verdict:
    """Constraint outcomes of one rule: failures are appended to ``reasons``/``recommendations``."""

    ok: bool = True
    reasons: list[str] = dataclasses.field(default_factory=list)
    recommendations: list[str] = dataclasses.field(default_factory=list)

    def fail(self, reason: str, recommendation: str | None = None) -> None:
        self.ok = False
        self.reasons.append(reason)
        if recommendation:
            self.recommendations.append(recommendation)


class Scenario(BaseModel):
    """The base of the five scenarios (see the module docstring).

    Subclasses set ``name`` (a ``Literal``), their TestSettings fields and :data:`SETTINGS`, and
    override the hooks below.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    #: scenario field -> TestSettings field.
    SETTINGS: ClassVar[Mapping[str, str]] = {}
    #: the scenario's ``requested_*`` keys, logged before :data:`COMMON_REQUESTED`.
    REQUESTED: ClassVar[tuple[str, ...]] = ()
    #: serial scenarios (one query at a time) run on exactly one shard.
    serial: ClassVar[bool] = False
    #: LoadGen's recommendation when min duration is not met.
    DURATION_HINT: ClassVar[str] = ""

    # ------------------------------------------------------------------ settings
    def settings_overrides(self) -> dict[str, Any]:
        """The TestSettings overrides this scenario block sets (fields left ``None`` set nothing)."""
        return {ts: getattr(self, f) for f, ts in self.SETTINGS.items() if getattr(self, f) is not None}

    def shard_count(self, requested: int) -> int:
        """Shards this scenario runs on when ``requested`` are asked for (serial ones: 1)."""
        return 1 if self.serial else max(1, int(requested))

    def effective(self, s: TestSettings, qsl_total: int, qsl_performance: int) -> Effective:
        """LoadGen's TestSettingsInternal for these settings and QSL sizes."""
        base = self._base_effective(s, qsl_total, qsl_performance)
        return dataclasses.replace(base, **self._effective_overrides(s, base))

    def _base_effective(self, s: TestSettings, qsl_total: int, qsl_performance: int) -> Effective:
        """The fields every scenario takes straight from the settings (``samples_per_query`` 1,
        no latency bound, one async query, ``target_duration = min_duration``)."""
        perf = s.performance_sample_count_override or qsl_performance
        return Effective(
            scenario=self.name, mode=s.mode, samples_per_query=1, target_qps=1.0, target_latency_ns=0,
            target_latency_percentile=0.99, max_async_queries=1, target_duration_ms=int(s.min_duration_ms),
            min_duration_ms=int(s.min_duration_ms), max_duration_ms=int(s.max_duration_ms),
            min_query_count=int(s.min_query_count), max_query_count=int(s.max_query_count),
            min_sample_count=int(s.min_query_count), qsl_rng_seed=s.qsl_rng_seed,
            sample_index_rng_seed=s.sample_index_rng_seed, schedule_rng_seed=s.schedule_rng_seed,
            accuracy_log_rng_seed=s.accuracy_log_rng_seed, accuracy_log_probability=s.accuracy_log_probability,
            accuracy_log_sampling_target=s.accuracy_log_sampling_target, print_timestamps=s.print_timestamps,
            performance_issue_unique=s.performance_issue_unique, performance_issue_same=s.performance_issue_same,
            performance_issue_same_index=s.performance_issue_same_index, performance_sample_count=int(perf),
            accuracy_sample_count=int(s.accuracy_sample_count_override or qsl_total),
            sample_concatenate_permutation=s.sample_concatenate_permutation,
        )

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        """Scenario-specific effective values (``min_sample_count`` must be kept consistent)."""
        return {}

    def requested_items(self, s: TestSettings) -> dict[str, Any]:
        """``requested_*`` keys and values in LoadGen's ``LogRequestedTestSettings`` order."""
        out: dict[str, Any] = {"requested_scenario": self.name, "requested_test_mode": s.mode}
        for name in self.REQUESTED + COMMON_REQUESTED:
            out[f"requested_{name}"] = getattr(s, name)
        if s.use_token_latencies:
            out["requested_use_token_latencies"] = True
            if self.name != "Offline":
                out["requested_server_ttft_latency"] = s.server_ttft_latency
                out["requested_server_tpot_latency"] = s.server_tpot_latency
        return out

    # ------------------------------------------------------------------ plan
    def padding(self, eff: Effective) -> int:
        """Samples appended to each loadable set (MultiStream: ``samples_per_query - 1``)."""
        return 0

    def build_phase(self, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                    sample_rng: np.random.Generator, seq_base: int) -> Phase:
        """The queries issued against one loaded set."""
        raise NotImplementedError

    def partition(self, plan: Plan, shards: int) -> list[ShardSlice]:
        """Split the plan over shards: round-robin over the global query order by default."""
        from raybench.core.plan import round_robin

        return round_robin(plan, shards)

    def bounds(self, plan: Plan) -> dict[str, int]:
        """Latency bounds the verdict compares against, by metric: shards count the values above
        each one exactly, so verdicts stay exact with histograms."""
        return {}

    def plan_size(self, eff: Effective) -> tuple[float, float]:
        """Estimated ``(samples in the plan, seconds to issue them)`` before the plan is built."""
        n = max(float(eff.min_query_count), 2.0 * eff.target_duration_ms / 1000.0 * eff.target_qps)
        return n * eff.samples_per_query, n / eff.target_qps

    def rate_setting(self) -> str:
        """The TestSettings field that sets this scenario's rate (named in plan-size errors)."""
        return "min_query_count"

    def deadline_s(self, plan: Plan, query_timeout_s: float, grace_s: float) -> float | None:
        """The hard end of the run counted from T0 (``None``: bounded by per-query timeouts)."""
        if plan.effective.max_duration_ms:
            return plan.effective.max_duration_ms / 1000.0 + grace_s
        return None

    # ------------------------------------------------------------------ issuing
    async def issue(self, runner: ShardRunner, phase_i: int, phase: PhaseSlice, start_ns: int) -> None:
        """Issue one phase of the shard's slice (``start_ns``: the phase start relative to T0)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ verdict
    def final_query_by_schedule(self) -> bool:
        """Whether LoadGen's "final query" is the last scheduled one (Server) or the last issued."""
        return False

    def lateness_checked(self) -> bool:
        """Whether send lateness (actual - intended send) is held to ``lateness_p99_ms``: scenarios
        whose sends have a due time (Server, closed-loop streams); serial ones send when ready."""
        return False

    def queries_issued(self, st: RunStats, plan: Plan) -> int:
        """LoadGen's ``result_query_count``."""
        return st.queries_issued

    def overlatency_count(self, st: RunStats, plan: Plan) -> int:
        """LoadGen's ``result_overlatency_query_count`` (Server only)."""
        return 0

    def throughput(self, st: RunStats) -> Throughput:
        raise NotImplementedError

    def duration_s(self, st: RunStats) -> float:
        """The time the min-duration rule compares with ``min_duration`` (LoadGen's per scenario)."""
        return st.final_issued_ns / 1e9

    def constraints(self, st: RunStats, plan: Plan) -> Verdict:
        """Performance constraints (only Server has any in LoadGen)."""
        return Verdict()

    def early_stopping(self, st: RunStats, plan: Plan) -> list[tuple[str, EarlyStoppingResult]]:
        """LoadGen's early-stopping results, by name (``latency``, ``ttft``, ``tpot``)."""
        return []

    def query_latency_applies(self) -> bool:
        """Whether per-query latencies (MultiStream) are reported."""
        return False
