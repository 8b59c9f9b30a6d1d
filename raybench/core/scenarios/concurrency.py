"""Concurrency (raybench, MLPerf Endpoints style): a closed loop of ``target_concurrency`` streams.

* Effective: ``max_async_queries = target_concurrency``; ``target_qps = offline_expected_qps``
  (only for accuracy-log sampling); no latency bound; percentile
  ``server_target_latency_percentile`` (reported only).
* Plan: performance mode draws samples per stream at run time (:func:`stream_samples`, seeded by
  ``(sample_index_rng_seed, stream)``), so a stream's sequence does not depend on the shard it runs
  on; accuracy mode issues every loaded sample once. Streams are dealt to shards round-robin.
* Issuing: each stream sends its next query as soon as its previous one completes, until
  ``min_duration`` and the stream's share of ``min_query_count`` are reached. A query's intended
  send time is its predecessor's completion, so lateness measures how long the harness took to
  react; a harness too busy to keep its streams moving is flagged as in Server.
* Throughput: samples/s = ``n / last completion``; scheduled samples/s as Server's.
* Min duration: the last completion ``>= min_duration``.
* Multi-turn: with a sample library of conversations each stream plays whole conversations
  (:mod:`raybench.core.conversations`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from raybench.core.conversations import has_conversations, play_conversations
from raybench.core.plan import Phase, make_slice, slice_queries, stream_samples
from raybench.core.scenarios.base import Effective, Scenario, Throughput
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.loadgen import ShardRunner
    from raybench.core.plan import PhaseSlice, Plan, ShardSlice

__all__ = ["Concurrency"]

_CHUNK = 256


class Concurrency(Scenario):
    """Closed loop (see the module docstring for every rule)."""

    name: Literal["Concurrency"] = "Concurrency"
    target_concurrency: int | None = None

    SETTINGS: ClassVar[dict[str, str]] = {"target_concurrency": "target_concurrency"}
    REQUESTED: ClassVar[tuple[str, ...]] = ("target_concurrency",)
    DURATION_HINT: ClassVar[str] = "Increase the duration or the concurrency."

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        c = max(1, int(s.target_concurrency))
        return {"target_qps": float(s.offline_expected_qps), "max_async_queries": c, "concurrency": c,
                "target_latency_percentile": float(s.server_target_latency_percentile)}

    def plan_size(self, eff: Effective) -> tuple[float, float]:
        """Samples are drawn at run time; the plan holds only accuracy-mode samples."""
        return float(eff.accuracy_sample_count if eff.accuracy else 0), eff.min_duration_ms / 1000.0

    def build_phase(self, s: TestSettings, eff: Effective, loaded: np.ndarray, set_index: int,
                    sample_rng: np.random.Generator, seq_base: int) -> Phase:
        samples = loaded[sample_rng.permutation(loaded.shape[0])] if eff.accuracy else np.zeros(0, np.int64)
        return Phase(loaded, np.zeros(samples.shape[0], np.int64), samples, 1, seq_base)

    def partition(self, plan: Plan, shards: int) -> list[ShardSlice]:
        """Streams (and accuracy-mode samples) are dealt round-robin."""
        out = []
        for k in range(shards):
            phases = [slice_queries(p, np.arange(k, p.query_count, shards, dtype=np.int64)) for p in plan.phases]
            streams = np.arange(k, plan.effective.concurrency, shards, dtype=np.int64)
            out.append(make_slice(plan, k, shards, phases, streams=streams))
        return out

    async def issue(self, runner: ShardRunner, phase_i: int, phase: PhaseSlice, start_ns: int) -> None:
        streams = runner.slice.streams if runner.slice.streams is not None else np.zeros(0, np.int64)
        if has_conversations(runner.library):
            if phase_i == 0:
                await play_conversations(runner, phase_i, streams)
            return
        if runner.effective.accuracy:
            queue = list(range(phase.query_count))[::-1]
            workers = [_accuracy_stream(runner, phase_i, phase, queue) for _ in range(max(1, len(streams)))]
        else:
            share = len(streams) / max(1, runner.effective.concurrency)
            min_queries = int(np.ceil(runner.effective.min_query_count * share))
            workers = [_stream(runner, phase_i, phase, int(s), min_queries) for s in streams]
        await asyncio.gather(*workers)

    def lateness_checked(self) -> bool:
        return True

    def throughput(self, st: RunStats) -> Throughput:
        n, done, sched = st.latency.count, st.final_done_ns / 1e9, st.final_scheduled_ns / 1e9
        return Throughput(
            samples_per_second=n / (st.last_done_ns / 1e9) if st.last_done_ns > 0 else 0.0,
            scheduled_samples_per_second=(n - 1) / sched if sched > 0 and n > 1 else 0.0,
            tokens_per_second=st.total_tokens / done if done > 0 and st.total_tokens else None,
        )

    def duration_s(self, st: RunStats) -> float:
        return st.last_done_ns / 1e9


async def _stream(runner: ShardRunner, phase_i: int, phase: PhaseSlice, stream: int, min_queries: int) -> None:
    min_dur = runner.effective.min_duration_ms * 1_000_000
    loaded, seed = phase.loaded_set, runner.slice.stream_seed
    pos = 0
    chunk = np.zeros(0, dtype=np.int64)
    ready = runner.now()  # when this stream could send: T0, then each predecessor's completion
    while not runner.stopped:
        now = runner.now()
        if pos % _CHUNK == 0:
            chunk = stream_samples(loaded, seed, stream, _CHUNK, start=pos)
        sample = int(chunk[pos % _CHUNK])
        pos += 1
        task, row = runner.spawn_sample(phase_i, sample, stream, min(ready, now))
        await asyncio.gather(task, return_exceptions=True)
        ready = runner.completed_at(row) or runner.now()
        if runner.issued_queries >= min_queries and now >= min_dur:
            runner.request_stop("min duration and min queries met")
        runner.check_limits(now)


async def _accuracy_stream(runner: ShardRunner, phase_i: int, phase: PhaseSlice, queue: list[int]) -> None:
    while queue and not runner.stopped:
        q = queue.pop()
        await asyncio.gather(runner.spawn(phase_i, phase, q, runner.now()), return_exceptions=True)
