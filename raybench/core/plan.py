"""The seeded, shard-independent plan of a run (numpy arrays), and each shard's slice of it.

The plan reproduces LoadGen's ``GenerateLoadableSets`` and ``GenerateQueries`` rules; the
scenario decides what a phase holds (:meth:`Scenario.build_phase`), this module holds the pieces
they share:

* **Loaded set**: ``[0, total)`` shuffled with the ``qsl_rng_seed``, cut into sets of
  ``performance_sample_count``; performance runs use the first set; MultiStream pads each set
  with its first ``samples_per_query - 1`` samples so a query's samples are contiguous.
* **Schedule**: Server inter-arrivals are exponential with rate ``target_qps``
  (``schedule_rng_seed``), each gap truncated to whole nanoseconds; SingleStream and MultiStream
  use the fixed period ``1/target_qps``. Queries are generated while the previous timestamp is
  below the generation duration or fewer than ``min_query_count`` queries exist.
* **Samples**: performance mode draws uniformly from the loaded set (``sample_index_rng_seed``);
  accuracy mode visits every loaded sample once in a shuffled order, one phase per loadable set;
  equal issue (``sample_concatenate_permutation``) concatenates shuffled permutations.
* **Load shapes**: Server's ``arrival`` block may replace the Poisson schedule with a constant
  rate (:func:`periodic_schedule`) or a gamma, ramp or trace schedule
  (:mod:`raybench.core.arrival`); a trace's send times come with the library (``arrival_ns``).
  A non-Poisson shape is recorded in ``Plan.meta["arrival"]``.
* **Fixed issue order**: a sample library may require its samples in one order (DLRMv3's
  streaming timestamps, each repeated ``repeats`` times); the plan then issues ``issue_order``
  cyclically instead of drawing (accuracy mode: every sample once, in first-appearance order).

Random streams come from numpy's PCG64 seeded with LoadGen's seeds, not ``std::mt19937``: the
sequences differ from LoadGen's bit for bit while following the same rules. The global sequence
of (intended offset, sample index) does not depend on the number of shards; a shard receives
only its :class:`ShardSlice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.scenarios.base import Effective, Scenario

__all__ = [
    "Phase",
    "PhaseSlice",
    "Plan",
    "ShardSlice",
    "build_plan",
    "equal_issue_count",
    "loadable_sets",
    "make_slice",
    "partition",
    "periodic_schedule",
    "poisson_schedule",
    "query_samples",
    "rng",
    "round_robin",
    "stream_samples",
]


@dataclass
class Phase:
    """One loaded set and the queries issued against it.

    Attributes:
        loaded_set: qsl indices to load before the phase (MultiStream: with padding).
        intended_ns: per query, the scheduled offset from the start of the phase.
        samples: qsl indices, ``samples_per_query`` consecutive entries per query.
        samples_per_query: samples in each query.
        seq_base: sequence id of the first sample (LoadGen's ``seq_id`` in the accuracy log).
        generated_duration_ns: LoadGen's ``generated_query_duration``.
        log_accuracy: per sample, whether its response goes to the accuracy log
            (``None`` = every sample in accuracy mode, none in performance mode).
    """

    loaded_set: np.ndarray
    intended_ns: np.ndarray
    samples: np.ndarray
    samples_per_query: int
    seq_base: int = 0
    generated_duration_ns: int = 0
    log_accuracy: np.ndarray | None = None

    @property
    def query_count(self) -> int:
        return int(self.intended_ns.shape[0])

    @property
    def sample_count(self) -> int:
        return int(self.samples.shape[0])


@dataclass
class Plan:
    """The global schedule of a run: what every shard together will issue."""

    scenario: Scenario
    effective: Effective
    settings: TestSettings
    total_count: int
    phases: list[Phase]
    loaded_sets: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy_log_all(self) -> bool:
        """Accuracy mode: every response is logged."""
        return self.effective.accuracy

    @property
    def query_count(self) -> int:
        return sum(p.query_count for p in self.phases)

    @property
    def sample_count(self) -> int:
        return sum(p.sample_count for p in self.phases)


@dataclass
class PhaseSlice:
    """A shard's part of one phase: only the queries it issues.

    Attributes:
        loaded_set: qsl indices the shard loads for the phase.
        query_ids: per query, its global index in the phase (Offline: one entry, the index of
            the shard's first sample in the single query; closed loop: empty).
        intended_ns: per query, the scheduled offset from the phase start.
        samples: ``samples_per_query`` qsl indices per query (Offline: the shard's samples).
        samples_per_query: samples per query.
        seq_base: ``seq_id`` of the phase's first sample; a query's first ``seq_id`` is
            ``seq_base + query_id * samples_per_query`` (Offline: ``seq_base + query_id``).
        log_accuracy: per sample of ``samples``, whether its response is logged.
    """

    loaded_set: np.ndarray
    query_ids: np.ndarray
    intended_ns: np.ndarray
    samples: np.ndarray
    samples_per_query: int
    seq_base: int = 0
    log_accuracy: np.ndarray | None = None

    @property
    def query_count(self) -> int:
        return int(self.query_ids.shape[0])

    def intended_list(self) -> list[int]:
        """``intended_ns`` as a Python list (cached): the issuing loop reads one element per query,
        and converting a whole run's worth at T0 would delay its first sends."""
        return self._listed("intended_ns")

    def query_ids_list(self) -> list[int]:
        """``query_ids`` as a Python list (cached)."""
        return self._listed("query_ids")

    def samples_list(self) -> list[int]:
        """``samples`` as a Python list (cached)."""
        return self._listed("samples")

    def _listed(self, name: str) -> list[int]:
        key = "_list_" + name
        cached = self.__dict__.get(key)
        if cached is None:
            cached = self.__dict__[key] = getattr(self, name).tolist()
        return cached

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_list_")}


@dataclass
class ShardSlice:
    """What one shard issues: its part of every phase plus the run constants it needs.

    Attributes:
        shard / shards: this shard's index and the shard count.
        scenario: the scenario object (owns the issuing loop).
        effective: the run's effective settings.
        phases: one :class:`PhaseSlice` per phase.
        streams: closed loop: the global stream ids this shard runs.
        stream_seed: closed loop: seed of the per-stream sample draws.
        use_token_latencies: the workload reports TTFT/TPOT.
        bounds: the latency bounds of the verdict (metric -> ns), counted exactly by the shard.
        slo: goodput SLOs (``ttft`` / ``tpot`` / ``e2el`` -> ns), counted exactly by the shard.
    """

    shard: int
    shards: int
    scenario: Scenario
    effective: Effective
    phases: list[PhaseSlice]
    streams: np.ndarray | None = None
    stream_seed: int = 0
    use_token_latencies: bool = False
    bounds: dict[str, int] = field(default_factory=dict)
    slo: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy_log_all(self) -> bool:
        return self.effective.accuracy

    @property
    def sample_capacity(self) -> int:
        """Rows this shard will record (closed-loop performance runs grow as they go)."""
        return sum(int(p.samples.shape[0]) for p in self.phases)


def rng(seed: int, *extra: int) -> np.random.Generator:
    """A PCG64 generator keyed by a LoadGen seed and optional stream tags."""
    return np.random.Generator(np.random.PCG64([int(seed) & (2**64 - 1), *extra]))


def loadable_sets(total: int, set_size: int, qsl_seed: int, padding: int) -> list[np.ndarray]:
    """LoadGen's ``GenerateLoadableSets``: shuffled [0, total) cut into padded sets."""
    if total <= 0:
        raise ValueError("sample library: total_count must be > 0")
    set_size = max(1, min(set_size, total))
    order = rng(qsl_seed).permutation(total).astype(np.int64)
    sets = [order[i : i + set_size] for i in range(0, total, set_size)]
    if padding:
        sets = [np.concatenate([s, np.resize(s, padding)]) for s in sets]
    return sets


def poisson_schedule(qps: float, seed: int, tag: int, gen_duration_ns: int, min_queries: int) -> tuple[np.ndarray, int]:
    """Exponential gaps (truncated to ns) while ``prev < gen_duration or n < min_queries``.

    Returns the intended offsets and the timestamp after the last one (LoadGen's
    ``generated_query_duration``).
    """
    if qps <= 0:
        raise ValueError("settings.server_target_qps must be > 0")
    g = rng(seed, tag)
    chunks: list[np.ndarray] = []
    t = n = 0
    while True:
        want = max(1024, int(gen_duration_ns / 1e9 * qps * 1.1) + min_queries - n + 16)
        gaps = np.floor(g.exponential(1.0 / qps, size=want) * 1e9).astype(np.int64)
        stamps = t + np.concatenate([[0], np.cumsum(gaps)])  # stamps[i] = time of query n+i
        # Query n+i is emitted; the loop continues while prev(=stamps[i]) < gen or n+i+1 < min.
        stop = np.nonzero((stamps[:-1] >= gen_duration_ns) & (n + np.arange(want) + 1 >= min_queries))[0]
        if stop.size:
            k = int(stop[0]) + 1
            chunks.append(stamps[:k])
            return np.concatenate(chunks), int(stamps[k])
        chunks.append(stamps[:-1])
        n += want
        t = int(stamps[-1])


def periodic_schedule(qps: float, gen_duration_ns: int, min_queries: int) -> tuple[np.ndarray, int]:
    """Fixed period ``1/qps``: the same generation rule as :func:`poisson_schedule`."""
    period = int(1e9 / qps) if qps > 0 else 0
    n = max(min_queries, (-(-gen_duration_ns // period) + 1) if period and gen_duration_ns else min_queries, 1)
    return np.arange(n, dtype=np.int64) * period, int(n * period)


def equal_issue_count(n: int, set_size: int) -> int:
    """``n`` rounded up to a whole number of passes over the loaded set (equal issue)."""
    return n + (-n) % set_size


def query_samples(loaded: np.ndarray, dist_end: int, n_q: int, spq: int, s: TestSettings,
                  g: np.random.Generator, unique: bool, equal_issue: bool) -> np.ndarray:
    """Sample indices of ``n_q`` queries of ``spq`` contiguous samples (LoadGen's rules).

    ``unique``: every query starts at a distinct position (accuracy mode, ``performance_issue_unique``).
    """
    if unique:
        starts = g.permutation(np.arange(0, dist_end, max(1, spq)))[:n_q]
    elif s.performance_issue_same:
        starts = np.full(n_q, s.performance_issue_same_index, dtype=np.int64)
    elif equal_issue and spq == 1:
        starts = np.concatenate([g.permutation(dist_end) for _ in range(-(-n_q // dist_end))])[:n_q]
    else:
        starts = g.integers(0, dist_end, size=n_q)
    if spq == 1:
        return loaded[starts].astype(np.int64)
    return loaded[(starts[:, None] + np.arange(spq)[None, :]).reshape(-1)].astype(np.int64)


def build_plan(scenario: Scenario, s: TestSettings, total_count: int, qsl_performance_count: int,
               issue_order: np.ndarray | None = None, arrival_ns: np.ndarray | None = None) -> Plan:
    """Build the global plan of a run (see the module docstring for the rules).

    Args:
        issue_order: a sample order the library requires (covering every index of
            ``[0, total)``, repeats allowed); performance runs issue it cyclically, accuracy runs
            every sample once in the order of first appearance.
        arrival_ns: a trace's recorded send times (one per entry of ``issue_order``), used by a
            scenario whose arrival shape replays a trace (``Server`` with ``arrival.kind: trace``).
    """
    eff = scenario.effective(s, total_count, qsl_performance_count)
    sets = loadable_sets(total_count, eff.performance_sample_count, s.qsl_rng_seed, scenario.padding(eff))
    sample_rng = rng(s.sample_index_rng_seed)
    arrival = getattr(scenario, "arrival", None)
    extra: dict[str, Any] = {}
    if arrival is not None and arrival.kind == "trace":
        if arrival_ns is None:
            raise ValueError("scenario.arrival: kind 'trace' needs a dataset with timestamps "
                             "(e.g. workload llm with workload.params.source=trace)")
        extra["arrival_ns"] = np.asarray(arrival_ns, dtype=np.int64)
    phases: list[Phase] = []
    seq = 0
    for i, loaded in enumerate(sets if eff.accuracy else sets[:1]):
        phase = scenario.build_phase(s, eff, loaded, i, sample_rng, seq, **extra)
        seq += phase.sample_count
        phases.append(phase)
    plan = Plan(scenario, eff, s, total_count, phases, loaded_sets=len(sets))
    if arrival is not None and not arrival.mlperf:
        plan.meta["arrival"] = arrival.describe()
    if issue_order is not None:
        _apply_issue_order(plan, np.asarray(issue_order, dtype=np.int64))
    if not eff.accuracy and (s.accuracy_log_probability > 0 or s.accuracy_log_sampling_target > 0):
        _mark_accuracy_sampling(plan)
    return plan


def _apply_issue_order(plan: Plan, order: np.ndarray) -> None:
    """Replace the drawn samples with the library's fixed order.

    ``order`` (one epoch) must cover every index of ``[0, total)`` at least once; an index may
    recur (DLRMv3's ``repeats``). Performance runs issue it cyclically (the k-th sample of the run
    is ``order[k % len(order)]``); accuracy runs issue every sample exactly once, in the order of
    its first appearance in ``order``.
    """
    total = plan.total_count
    order = order.reshape(-1)
    if order.size == 0 or order.min() < 0 or order.max() >= total or np.unique(order).size != total:
        bad = int(np.count_nonzero((order < 0) | (order >= total)))
        missing = total - int(np.unique(order[(order >= 0) & (order < total)]).size)
        raise ValueError(f"sample library: issue_order must cover every index of [0, {total}) at least once "
                         f"(got {order.size} entries: {missing} indices missing, {bad} out of range)")
    if len(plan.phases) > 1 or plan.effective.performance_sample_count < total:
        raise ValueError("sample library: a fixed issue_order needs every sample loaded at once "
                         "(performance_count == total_count)")
    if plan.effective.accuracy:
        _, first = np.unique(order, return_index=True)
        once = order[np.sort(first)]
        for phase in plan.phases:
            if phase.sample_count != total:
                raise ValueError(f"sample library: an accuracy run with a fixed issue_order must issue every "
                                 f"sample once ({total}), the plan has {phase.sample_count}")
            phase.samples = once.copy()
    else:
        for phase in plan.phases:
            k = np.arange(phase.seq_base, phase.seq_base + phase.sample_count, dtype=np.int64)
            phase.samples = order[k % order.size]
    plan.meta["issue_order"] = "fixed by the sample library"


def _mark_accuracy_sampling(plan: Plan) -> None:
    """Performance-mode accuracy sampling (compliance TEST01): LoadGen's probability rule."""
    s, eff = plan.settings, plan.effective
    prob = float(s.accuracy_log_probability)
    if s.accuracy_log_sampling_target > 0:
        expected = int(eff.target_qps * eff.min_duration_ms / 1000)
        if eff.scenario != "Offline":
            expected *= eff.samples_per_query
        expected = max(expected, eff.min_sample_count)
        prob = s.accuracy_log_sampling_target / max(1, expected)
    g = rng(s.accuracy_log_rng_seed)
    offset = g.random()
    for phase in plan.phases:
        phase.log_accuracy = ((g.random(phase.sample_count) + offset) % 1.0) <= prob


def stream_samples(loaded: np.ndarray, seed: int, stream: int, count: int, start: int = 0) -> np.ndarray:
    """Closed loop: the sample indices that global stream ``stream`` issues, deterministically.

    Every stream has its own generator seeded by (sample_index_rng_seed, stream), so the
    sequence a stream issues is the same however streams are spread over shards.
    """
    draws = rng(seed, 1_000_003, stream).integers(0, loaded.shape[0], size=start + count)
    return loaded[draws[start:]].astype(np.int64)


def slice_queries(phase: Phase, ids: np.ndarray) -> PhaseSlice:
    """The :class:`PhaseSlice` holding queries ``ids`` of ``phase`` (in that order)."""
    spq = phase.samples_per_query
    rows = phase.samples.reshape(-1, spq)[ids].reshape(-1) if ids.size else np.zeros(0, np.int64)
    mask = None
    if phase.log_accuracy is not None:
        mask = phase.log_accuracy.reshape(-1, spq)[ids].reshape(-1)
    return PhaseSlice(phase.loaded_set, ids.astype(np.int64), phase.intended_ns[ids], rows, spq, phase.seq_base, mask)


def round_robin(plan: Plan, shards: int) -> list[ShardSlice]:
    """Shard k issues queries k, k+S, k+2S, ... of every phase: every shard sees the same arrival
    rate and the union of the slices is the global schedule."""
    out = []
    for k in range(shards):
        phases = [slice_queries(p, np.arange(k, p.query_count, shards, dtype=np.int64)) for p in plan.phases]
        out.append(make_slice(plan, k, shards, phases))
    return out


def make_slice(plan: Plan, k: int, shards: int, phases: list[PhaseSlice], streams: np.ndarray | None = None) -> ShardSlice:
    """Shard ``k``'s :class:`ShardSlice` with the given phase slices."""
    return ShardSlice(k, shards, plan.scenario, plan.effective, phases, streams=streams,
                      stream_seed=int(plan.settings.sample_index_rng_seed),
                      use_token_latencies=bool(plan.settings.use_token_latencies),
                      bounds=plan.scenario.bounds(plan), slo=dict(plan.meta.get("slo_ns") or {}))


def partition(plan: Plan, shards: int) -> list[ShardSlice]:
    """Split a plan over ``shards`` load generators, as its scenario does.

    Raises:
        ValueError: ``shards < 1``, or more than one shard for a serial scenario.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    if plan.scenario.shard_count(shards) != shards:
        raise ValueError(f"{plan.scenario.name} is serial by definition and runs on exactly one shard")
    return plan.scenario.partition(plan, shards)
