"""From TestSettings to a seeded, shard-independent plan of queries (numpy arrays).

The plan reproduces LoadGen's ``GenerateLoadableSets`` and ``GenerateQueries`` semantics:

* **Loaded set**: ``[0, total)`` shuffled with the ``qsl_rng_seed``, cut into sets of
  ``performance_sample_count``; performance runs use the first set; MultiStream pads each set
  with its first ``samples_per_query - 1`` samples so a query's samples are contiguous.
* **Schedule**: Server inter-arrivals are exponential with rate ``target_qps``
  (``schedule_rng_seed``), each gap truncated to whole nanoseconds; other scenarios use the fixed
  period ``1/target_qps``. Queries are generated while the previous timestamp is below the
  generation duration (1 x ``min_duration`` for Server, 2 x otherwise) or fewer than
  ``min_query_count`` queries exist.
* **Samples**: performance mode draws uniformly from the loaded set (``sample_index_rng_seed``);
  accuracy mode visits every loaded sample exactly once in a shuffled order, one phase per
  loadable set; equal issue (``sample_concatenate_permutation``) concatenates shuffled
  permutations of the loaded set and pads the query count to a multiple of its size; Offline
  issues one query holding the loaded set repeated ``1.1 x min_duration x expected QPS`` times.

Random streams come from numpy's PCG64 seeded with LoadGen's seeds, not from ``std::mt19937``;
the sequences therefore differ from LoadGen's bit for bit, while following the same rules.
The global sequence of (intended offset, sample index) does not depend on the number of
shards: :func:`partition` only decides which shard issues which query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raybench.core.settings import TestSettings

__all__ = [
    "CLOSED_LOOP",
    "Effective",
    "Phase",
    "Plan",
    "ShardSlice",
    "build_plan",
    "effective_settings",
    "partition",
    "stream_samples",
]

CLOSED_LOOP = "Concurrency"
_OFFLINE_SLACK = 1.1  # LoadGen's kSlack


@dataclass(frozen=True)
class Effective:
    """LoadGen's ``TestSettingsInternal``: the values a run actually uses.

    ``target_latency_ns`` is the Server bound (or the expected latency for SingleStream and
    MultiStream); ``samples_per_query`` is 1 (Server, SingleStream, Concurrency), the
    MultiStream setting, or the size of the single Offline query.
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
    performance_sample_count: int
    concurrency: int = 0


def effective_settings(s: TestSettings, qsl_performance_count: int) -> Effective:
    """Derive the effective values exactly as LoadGen's ``TestSettingsInternal`` does."""
    perf_count = s.performance_sample_count_override or qsl_performance_count
    spq = 1
    max_async = 0
    min_query_count = s.min_query_count
    target_duration_ms = s.min_duration_ms
    concurrency = 0
    if s.scenario == "SingleStream":
        target_qps = 1e9 / s.single_stream_expected_latency_ns
        target_latency = int(s.single_stream_expected_latency_ns)
        percentile = s.single_stream_target_latency_percentile
        max_async = 1
    elif s.scenario == "MultiStream":
        target_qps = 1e9 / s.multi_stream_expected_latency_ns
        target_latency = int(s.multi_stream_expected_latency_ns)
        percentile = s.multi_stream_target_latency_percentile
        max_async = 1
        spq = s.multi_stream_samples_per_query
    elif s.scenario == "Server":
        target_qps = s.server_target_qps
        target_latency = int(s.server_target_latency_ns)
        percentile = s.server_target_latency_percentile
        max_async = s.server_max_async_queries
    elif s.scenario == "Offline":
        target_qps = s.offline_expected_qps
        target_latency = 0
        percentile = 0.99
        max_async = 1
        target_sample_count = int(_OFFLINE_SLACK * (s.min_duration_ms / 1000.0) * target_qps)
        if s.performance_issue_unique or s.performance_issue_same:
            spq = perf_count
        else:
            spq = max(min_query_count, target_sample_count)
        min_query_count = 1
        target_duration_ms = 0
    elif s.scenario == CLOSED_LOOP:
        target_qps = s.server_target_qps
        target_latency = int(s.server_target_latency_ns)
        percentile = s.server_target_latency_percentile
        concurrency = max(1, int(s.target_concurrency))
        max_async = concurrency
    else:  # pragma: no cover - validated by settings
        raise ValueError(f"scenario: unknown scenario {s.scenario!r}")
    return Effective(
        scenario=s.scenario,
        mode=s.mode,
        samples_per_query=int(spq),
        target_qps=float(target_qps),
        target_latency_ns=target_latency,
        target_latency_percentile=float(percentile),
        max_async_queries=int(max_async),
        target_duration_ms=int(target_duration_ms),
        min_duration_ms=int(s.min_duration_ms),
        max_duration_ms=int(s.max_duration_ms),
        min_query_count=int(min_query_count),
        max_query_count=int(s.max_query_count),
        min_sample_count=int(min_query_count * spq),
        performance_sample_count=int(perf_count),
        concurrency=concurrency,
    )


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
            (``None`` = every sample, as in accuracy mode).
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


@dataclass
class Plan:
    """The global schedule of a run: what every shard together will issue."""

    effective: Effective
    settings: TestSettings
    total_count: int
    phases: list[Phase]
    accuracy_log_all: bool
    loaded_sets: int = 1
    stream_seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def query_count(self) -> int:
        return sum(p.query_count for p in self.phases)

    @property
    def sample_count(self) -> int:
        return sum(int(p.samples.shape[0]) for p in self.phases)


@dataclass
class ShardSlice:
    """What one shard issues: its share of every phase plus the global context.

    For Server/SingleStream/MultiStream ``query_ids`` are global query indices into each phase;
    for Offline they index the batches the shard cuts from its sample range; for the
    closed loop ``streams`` lists the global stream ids this shard runs.
    """

    shard: int
    shards: int
    plan: Plan
    query_ids: list[np.ndarray]
    streams: np.ndarray | None = None


def _rng(seed: int, *extra: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([int(seed) & (2**64 - 1), *extra]))


def loadable_sets(total: int, set_size: int, qsl_seed: int, padding: int) -> list[np.ndarray]:
    """LoadGen's ``GenerateLoadableSets``: shuffled [0, total) cut into padded sets."""
    if total <= 0:
        raise ValueError("sample library: total_count must be > 0")
    set_size = max(1, min(set_size, total))
    order = _rng(qsl_seed).permutation(total).astype(np.int64)
    sets = [order[i : i + set_size] for i in range(0, total, set_size)]
    if padding:
        sets = [np.concatenate([s, np.resize(s, padding)]) for s in sets]
    return sets


def _schedule(eff: Effective, seed: int, count_rule: tuple[int, int], rng_tag: int) -> tuple[np.ndarray, int]:
    """Timestamps for queries: LoadGen's ``while prev < gen_duration or n < min_queries`` loop.

    Returns the intended offsets and the timestamp after the last one
    (``generated_query_duration``).
    """
    gen_duration_ns, min_queries = count_rule
    if eff.scenario == "Server" or eff.scenario == CLOSED_LOOP:
        if eff.target_qps <= 0:
            raise ValueError("settings.server_target_qps must be > 0")
        rng = _rng(seed, rng_tag)
        chunks: list[np.ndarray] = []
        t = 0
        n = 0
        out_last = 0
        while True:
            want = max(1024, int(gen_duration_ns / 1e9 * eff.target_qps * 1.1) + min_queries - n + 16)
            gaps = np.floor(rng.exponential(1.0 / eff.target_qps, size=want) * 1e9).astype(np.int64)
            stamps = t + np.concatenate([[0], np.cumsum(gaps)])  # stamps[i] = time of query n+i
            # Query n+i is emitted; the loop continues while prev(=stamps[i]) < gen or n+i+1 < min.
            idx = np.arange(want)
            stop = np.nonzero((stamps[:-1] >= gen_duration_ns) & (n + idx + 1 >= min_queries))[0]
            if stop.size:
                k = int(stop[0]) + 1
                chunks.append(stamps[:k])
                out_last = int(stamps[k])
                break
            chunks.append(stamps[:-1])
            n += want
            t = int(stamps[-1])
        intended = np.concatenate(chunks)
        return intended, out_last
    period = int(1e9 / eff.target_qps) if eff.target_qps > 0 else 0
    n = max(min_queries, (-(-gen_duration_ns // period) + 1) if period and gen_duration_ns else min_queries)
    n = max(n, 1)
    intended = np.arange(n, dtype=np.int64) * period
    return intended, int(n * period)


def build_plan(s: TestSettings, total_count: int, qsl_performance_count: int) -> Plan:
    """Build the global plan for a run (see the module docstring for the rules)."""
    eff = effective_settings(s, qsl_performance_count)
    accuracy = s.mode == "AccuracyOnly"
    spq = eff.samples_per_query
    padding = spq - 1 if eff.scenario == "MultiStream" else 0
    sets = loadable_sets(total_count, eff.performance_sample_count, s.qsl_rng_seed, padding)
    sample_rng = _rng(s.sample_index_rng_seed)
    phases: list[Phase] = []
    seq = 0
    if accuracy:
        used_sets = sets
    else:
        used_sets = sets[:1]
    for set_i, loaded in enumerate(used_sets):
        dist_end = int(loaded.shape[0]) - padding
        if eff.scenario == "Offline":
            n_samples = dist_end if accuracy else spq
            samples = _offline_samples(loaded, n_samples, s, sample_rng, accuracy)
            phase = Phase(
                loaded_set=loaded,
                intended_ns=np.zeros(1, dtype=np.int64),
                samples=samples,
                samples_per_query=int(samples.shape[0]),
                seq_base=seq,
                generated_duration_ns=0,
            )
        elif eff.scenario == CLOSED_LOOP:
            # Closed loop: samples are drawn per stream at run time (see stream_samples);
            # accuracy mode still issues every loaded sample exactly once.
            if accuracy:
                samples = loaded[sample_rng.permutation(dist_end)]
            else:
                samples = np.zeros(0, dtype=np.int64)
            phase = Phase(
                loaded_set=loaded,
                intended_ns=np.zeros(samples.shape[0], dtype=np.int64),
                samples=samples,
                samples_per_query=1,
                seq_base=seq,
            )
        else:
            if accuracy or s.performance_issue_unique:
                gen_ns, min_q = 0, dist_end // spq
            else:
                gen_ns = (1 if eff.scenario == "Server" else 2) * eff.target_duration_ms * 1_000_000
                min_q = eff.min_query_count
            equal_issue = bool(s.sample_concatenate_permutation) and not accuracy
            if equal_issue and min_q % dist_end:
                min_q += dist_end - min_q % dist_end
            intended, gen_dur = _schedule(eff, s.schedule_rng_seed, (gen_ns, min_q), set_i)
            n_q = int(intended.shape[0])
            if equal_issue and n_q % dist_end:
                # LoadGen bumps min_queries by a whole dataset while the duration is not met,
                # so the final count is a multiple of the loaded-set size.
                extra = dist_end - n_q % dist_end
                intended, gen_dur = _schedule(eff, s.schedule_rng_seed, (gen_ns, n_q + extra), set_i)
                n_q = int(intended.shape[0])
            samples = _query_samples(loaded, dist_end, n_q, spq, s, sample_rng, accuracy, equal_issue)
            phase = Phase(
                loaded_set=loaded,
                intended_ns=intended,
                samples=samples,
                samples_per_query=spq,
                seq_base=seq,
                generated_duration_ns=gen_dur,
            )
        seq += int(phase.samples.shape[0])
        phases.append(phase)
    plan = Plan(
        effective=eff,
        settings=s,
        total_count=total_count,
        phases=phases,
        accuracy_log_all=accuracy,
        loaded_sets=len(sets),
        stream_seed=int(s.sample_index_rng_seed),
    )
    if not accuracy and (s.accuracy_log_probability > 0 or s.accuracy_log_sampling_target > 0):
        _mark_accuracy_sampling(plan)
    return plan


def _offline_samples(
    loaded: np.ndarray, n: int, s: TestSettings, rng: np.random.Generator, accuracy: bool
) -> np.ndarray:
    if accuracy:
        return loaded[rng.permutation(loaded.shape[0])][:n].copy()
    m = int(loaded.shape[0])
    if s.performance_issue_same:
        return np.full(n, loaded[s.performance_issue_same_index], dtype=np.int64)
    if s.sample_concatenate_permutation and n % m:
        n += m - n % m
    reps, rem = divmod(n, m)
    blocks = []
    for _ in range(reps):
        blocks.append(loaded[rng.permutation(m)] if s.sample_concatenate_permutation else loaded)
    blocks.append(loaded[:rem])
    return np.concatenate(blocks).astype(np.int64)


def _query_samples(
    loaded: np.ndarray,
    dist_end: int,
    n_q: int,
    spq: int,
    s: TestSettings,
    rng: np.random.Generator,
    accuracy: bool,
    equal_issue: bool,
) -> np.ndarray:
    stride = spq if spq > 1 else 1
    if accuracy or s.performance_issue_unique:
        starts = rng.permutation(np.arange(0, dist_end, stride))[:n_q]
    elif s.performance_issue_same:
        starts = np.full(n_q, s.performance_issue_same_index, dtype=np.int64)
    elif equal_issue and spq == 1:
        perms = [rng.permutation(dist_end) for _ in range(-(-n_q // dist_end))]
        starts = np.concatenate(perms)[:n_q]
    else:
        starts = rng.integers(0, dist_end, size=n_q)
    if spq == 1:
        return loaded[starts].astype(np.int64)
    idx = starts[:, None] + np.arange(spq)[None, :]
    return loaded[idx.reshape(-1)].astype(np.int64)


def _mark_accuracy_sampling(plan: Plan) -> None:
    """Performance-mode accuracy sampling (compliance TEST01): LoadGen's probability rule."""
    s = plan.settings
    eff = plan.effective
    prob = float(s.accuracy_log_probability)
    if s.accuracy_log_sampling_target > 0:
        expected = int(eff.target_qps * eff.min_duration_ms / 1000)
        if eff.scenario != "Offline":
            expected *= eff.samples_per_query
        expected = max(expected, eff.min_sample_count)
        prob = s.accuracy_log_sampling_target / max(1, expected)
    rng = _rng(s.accuracy_log_rng_seed)
    offset = rng.random()
    for phase in plan.phases:
        vals = (rng.random(phase.samples.shape[0]) + offset) % 1.0
        phase.log_accuracy = vals <= prob


def stream_samples(plan: Plan, stream: int, count: int, start: int = 0) -> np.ndarray:
    """Closed loop: the sample indices that global stream ``stream`` issues, deterministically.

    Every stream has its own generator seeded by (sample_index_rng_seed, stream), so the
    sequence a stream issues is the same however streams are spread over shards.
    """
    loaded = plan.phases[0].loaded_set
    rng = _rng(plan.stream_seed, 1_000_003, stream)
    draws = rng.integers(0, loaded.shape[0], size=start + count)
    return loaded[draws[start:]].astype(np.int64)


def partition(plan: Plan, shards: int) -> list[ShardSlice]:
    """Split a plan over ``shards`` load generators.

    Server: round-robin over the global query order (shard k issues queries k, k+S, ...), so
    every shard sees the same arrival rate and the union is the global schedule. Offline: each
    shard gets a contiguous range of the single query's samples. Closed loop: the concurrency
    streams are dealt round-robin. SingleStream/MultiStream are serial by definition and must
    run on one shard.
    """
    eff = plan.effective
    if shards < 1:
        raise ValueError("shards must be >= 1")
    if eff.scenario in ("SingleStream", "MultiStream") and shards != 1:
        raise ValueError(f"{eff.scenario} is serial by definition and runs on exactly one shard")
    out = []
    for k in range(shards):
        if eff.scenario == "Offline":
            ids = []
            for phase in plan.phases:
                n = int(phase.samples.shape[0])
                lo, hi = (n * k) // shards, (n * (k + 1)) // shards
                ids.append(np.array([lo, hi], dtype=np.int64))
            out.append(ShardSlice(k, shards, plan, ids))
        elif eff.scenario == CLOSED_LOOP:
            ids = [np.arange(k, p.query_count, shards, dtype=np.int64) for p in plan.phases]
            streams = np.arange(k, eff.concurrency, shards, dtype=np.int64)
            out.append(ShardSlice(k, shards, plan, ids, streams=streams))
        else:
            ids = [np.arange(k, p.query_count, shards, dtype=np.int64) for p in plan.phases]
            out.append(ShardSlice(k, shards, plan, ids))
    return out
