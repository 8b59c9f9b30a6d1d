"""Streamed phases: a performance phase's per-query arrays regenerated from the seeds, in chunks.

The driver keeps only a phase's metadata (query and sample counts, generated duration, last
scheduled offset) and a :class:`PhaseSource`, the recipe of its arrays; each shard regenerates
only its own queries (:func:`regenerate`) by walking the global sequence in chunks and keeping
its share, so neither the driver's nor a shard's memory grows with the whole run's query count.

Every draw is chunk-independent by construction, so the sequence is the same for any chunk size
and any shard count:

* schedule: one generator per stream (``schedule_rng_seed``, loaded-set index), drawn in order
  with methods whose output does not depend on how a draw is split (exponential, gamma); sums
  carry the previous chunk's last value (floating-point sums in the same order);
* sample starts: ``floor(u * n)`` with ``u`` the ``j``-th double of a PCG64 stream (one 64-bit
  step per double, so query ``j``'s draw is found with ``advance``); equal issue: pass ``p`` is
  a permutation from its own generator ``(sample_index_rng_seed, 2, p)``; a fixed
  ``issue_order`` is indexed by the sample's position;
* accuracy-log sampling (TEST01): sample ``i`` is logged when ``(u_{i+1} + u_0) % 1 <= p``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from raybench.core.plan import rng

if TYPE_CHECKING:
    from raybench.core.plan import PhaseSlice, Plan

__all__ = ["MaskSpec", "PhaseSource", "ScheduleSpec", "apply_issue_order", "count_schedule", "first_stamps",
           "mark_accuracy_sampling", "mask_values", "regenerate", "regenerate_slice", "regenerate_whole",
           "sample_rows", "stamp_chunks"]

#: Queries generated per step when a phase is counted or regenerated.
CHUNK = 1 << 16


@dataclass(frozen=True)
class ScheduleSpec:
    """The recipe of a schedule: ``kind`` is poisson, periodic, gamma, ramp or trace."""

    kind: str
    qps: float = 0.0
    seed: int = 0
    tag: int = 0
    burstiness: float = 1.0
    end_qps: float = 0.0
    ramp_ns: int = 0
    random: bool = True
    trace: np.ndarray | None = None  # a trace's send times (bounded by the sample library)


@dataclass(frozen=True)
class MaskSpec:
    """Accuracy-log sampling of a performance run (LoadGen's probability rule)."""

    seed: int
    prob: float


@dataclass(frozen=True)
class PhaseSource:
    """What a streamed phase needs to regenerate its arrays.

    Attributes:
        schedule: the arrival recipe (``None``: Offline's single query at offset 0).
        query_count / samples_per_query: the phase's size (Offline: one query of every sample).
        mode: how sample starts are chosen: ``uniform`` (drawn), ``same``
            (``performance_issue_same_index``), ``equal`` (shuffled passes), ``cyclic`` (the loaded
            set in order) or ``order`` (the library's fixed ``issue_order``, by sample position).
        base: the loaded set (``order``: the issue order).
        dist_end: starts are drawn from ``[0, dist_end)`` (the loaded set without padding).
        seed: ``sample_index_rng_seed``; same_index: ``performance_issue_same_index``.
        seq_base: position of the phase's first sample (``order`` mode).
        mask: accuracy-log sampling, if any.
    """

    schedule: ScheduleSpec | None
    query_count: int
    samples_per_query: int
    mode: str
    base: np.ndarray
    dist_end: int
    seed: int = 0
    same_index: int = 0
    seq_base: int = 0
    mask: MaskSpec | None = None

    @property
    def sample_count(self) -> int:
        return self.query_count * self.samples_per_query


# ---------------------------------------------------------------------------------- schedules
def stamp_chunks(spec: ScheduleSpec, chunk: int | None = None) -> Iterator[np.ndarray]:
    """The schedule's absolute timestamps (ns), ``chunk`` at a time, from query 0 on (endless,
    except a trace)."""
    from raybench.core.arrival import gamma_gaps, ramp_stamps

    chunk = max(1, int(chunk or CHUNK))
    if spec.kind == "trace":
        ts = spec.trace if spec.trace is not None else np.zeros(0, np.int64)
        for i in range(0, ts.shape[0], chunk):
            yield ts[i : i + chunk]
        return
    if spec.kind == "periodic":
        period = int(1e9 / spec.qps) if spec.qps > 0 else 0
        for n in range(0, 1 << 62, chunk):
            yield np.arange(n, n + chunk, dtype=np.int64) * period
        return
    if spec.kind == "ramp":
        yield from ramp_stamps(spec.qps, spec.end_qps, spec.ramp_ns, spec.seed, spec.tag, spec.random, chunk)
        return
    g = rng(spec.seed, spec.tag)
    t: int | None = None
    while True:
        k = chunk if t is not None else chunk - 1
        if spec.kind == "gamma":
            gaps = gamma_gaps(g, spec.qps, spec.burstiness, k)
        else:
            gaps = np.floor(g.exponential(1.0 / spec.qps, size=k) * 1e9).astype(np.int64)
        stamps = np.concatenate([[0], np.cumsum(gaps)]) if t is None else t + np.cumsum(gaps)
        t = int(stamps[-1])
        yield stamps.astype(np.int64)


def count_schedule(spec: ScheduleSpec, gen_duration_ns: int, min_queries: int,
                   chunk: int | None = None) -> tuple[int, int, int]:
    """LoadGen's generation rule, counted without keeping the stamps.

    Query ``j`` is generated, and generation goes on while ``stamp[j] < gen_duration`` or
    ``j + 1 < min_queries`` (a trace: every entry once). Returns ``(query count, generated
    duration = the stamp after the last query (a trace: its last stamp), last stamp)``.
    """
    if spec.kind == "trace":
        ts = spec.trace if spec.trace is not None else np.zeros(0, np.int64)
        return int(ts.shape[0]), int(ts[-1]), int(ts[-1])
    if spec.kind == "periodic":  # closed form
        period = int(1e9 / spec.qps) if spec.qps > 0 else 0
        n = max(min_queries, (-(-gen_duration_ns // period) + 1) if period and gen_duration_ns else min_queries, 1)
        return n, n * period, (n - 1) * period
    n_seen = 0
    found = -1
    last = 0
    for stamps in stamp_chunks(spec, chunk):
        if found >= 0:  # the stamp after the last query opens this chunk
            return found, int(stamps[0]), last
        idx = n_seen + np.arange(stamps.shape[0])
        stop = np.nonzero((stamps >= gen_duration_ns) & (idx + 1 >= min_queries))[0]
        if stop.size:
            j = int(stop[0])
            found, last = n_seen + j + 1, int(stamps[j])
            if j + 1 < stamps.shape[0]:
                return found, int(stamps[j + 1]), last
        n_seen += stamps.shape[0]
    raise AssertionError("timestamp stream ended")  # pragma: no cover - the streams are endless


def first_stamps(spec: ScheduleSpec, n: int, chunk: int | None = None) -> np.ndarray:
    """The first ``n`` stamps of a schedule (a phase bounded by the library, or a test)."""
    out: list[np.ndarray] = []
    got = 0
    for stamps in stamp_chunks(spec, chunk):
        if got >= n:
            break
        out.append(stamps[: n - got])
        got += out[-1].shape[0]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------- samples
def _uniform(seed: int, tag: int, lo: int, hi: int) -> np.ndarray:
    """Doubles ``lo..hi-1`` of the stream ``(seed, tag)`` (random access)."""
    g = rng(seed, tag)
    if lo:
        g.bit_generator.advance(lo)
    return g.random(hi - lo)


@functools.lru_cache(maxsize=2)
def _pass(seed: int, p: int, m: int) -> np.ndarray:
    """Equal issue: the order of pass ``p`` over ``m`` samples (kept while chunks walk through it)."""
    return rng(seed, 2, p).permutation(m).astype(np.int64)


def _starts(src: PhaseSource, q0: int, q1: int) -> np.ndarray:
    """Start positions (in ``base``) of queries ``q0..q1-1`` (``cyclic``/``equal``: of samples)."""
    m = src.dist_end
    if src.mode == "same":
        return np.full(q1 - q0, src.same_index, dtype=np.int64)
    if src.mode == "uniform":
        return np.minimum((_uniform(src.seed, 3, q0, q1) * m).astype(np.int64), m - 1)
    if src.mode == "cyclic":
        return np.arange(q0, q1, dtype=np.int64) % m
    if src.mode == "equal":
        parts = []
        for p in range(q0 // m, -(-q1 // m)):
            perm = _pass(src.seed, p, m)
            a, b = max(q0, p * m) - p * m, min(q1, (p + 1) * m) - p * m
            parts.append(perm[a:b])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    raise ValueError(f"plan: unknown sample mode {src.mode!r}")


def sample_rows(src: PhaseSource, q0: int, q1: int) -> np.ndarray:
    """The qsl indices of queries ``q0..q1-1`` (``samples_per_query`` each, flattened).

    Offline (``schedule is None``) counts samples, not queries: ``q0..q1`` are sample positions.
    """
    spq = 1 if src.schedule is None else src.samples_per_query
    if src.mode == "order":
        pos = src.seq_base + np.arange(q0 * spq, q1 * spq, dtype=np.int64)
        return src.base[pos % src.base.shape[0]].astype(np.int64)
    starts = _starts(src, q0, q1)
    if spq == 1:
        return src.base[starts].astype(np.int64)
    return src.base[(starts[:, None] + np.arange(spq)[None, :]).reshape(-1)].astype(np.int64)


def mask_values(spec: MaskSpec, lo: int, hi: int) -> np.ndarray:
    """Whether samples ``lo..hi-1`` of the phase go to the accuracy log."""
    offset = float(_uniform(spec.seed, 0, 0, 1)[0])
    return ((_uniform(spec.seed, 0, 1 + lo, 1 + hi) + offset) % 1.0) <= spec.prob


def apply_issue_order(plan: Plan, order: np.ndarray) -> None:
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
            if phase.source is not None:  # streamed: the recipe indexes the order by sample position
                phase.source = dataclasses.replace(phase.source, mode="order", base=order, seq_base=phase.seq_base)
                continue
            k = np.arange(phase.seq_base, phase.seq_base + phase.sample_count, dtype=np.int64)
            phase.samples = order[k % order.size]
    plan.meta["issue_order"] = "fixed by the sample library"


def mark_accuracy_sampling(plan: Plan) -> None:
    """Performance-mode accuracy sampling (compliance TEST01): LoadGen's probability rule."""
    s, eff = plan.settings, plan.effective
    prob = float(s.accuracy_log_probability)
    if s.accuracy_log_sampling_target > 0:
        expected = int(eff.target_qps * eff.min_duration_ms / 1000)
        if eff.scenario != "Offline":
            expected *= eff.samples_per_query
        expected = max(expected, eff.min_sample_count)
        prob = s.accuracy_log_sampling_target / max(1, expected)
    spec = MaskSpec(int(s.accuracy_log_rng_seed), prob)
    for phase in plan.phases:  # performance runs have one phase
        if phase.source is not None:
            phase.source = dataclasses.replace(phase.source, mask=spec)
        else:
            phase.log_accuracy = mask_values(spec, 0, phase.sample_count)


# ---------------------------------------------------------------------------------- a shard's part
def regenerate(src: PhaseSource, shard: int, shards: int, chunk: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Shard ``shard``'s queries ``shard, shard + shards, ...`` of a scheduled phase.

    Returns ``(query ids, intended offsets, samples, accuracy-log mask or None)``; memory is the
    shard's share plus one chunk.
    """
    n, spq = src.query_count, src.samples_per_query
    ids, stamps_out, rows, masks = [], [], [], []
    q0 = 0
    assert src.schedule is not None
    for stamps in stamp_chunks(src.schedule, chunk):
        if q0 >= n:
            break
        q1 = min(n, q0 + stamps.shape[0])
        mine = np.arange(q0 + (shard - q0) % shards, q1, shards, dtype=np.int64)
        local = mine - q0
        ids.append(mine)
        stamps_out.append(stamps[local])
        rows.append(sample_rows(src, q0, q1).reshape(-1, spq)[local].reshape(-1))
        if src.mask is not None:
            masks.append(mask_values(src.mask, q0 * spq, q1 * spq).reshape(-1, spq)[local].reshape(-1))
        q0 = q1

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    return (cat(ids, np.int64), cat(stamps_out, np.int64), cat(rows, np.int64),
            cat(masks, np.bool_) if src.mask is not None else None)


def regenerate_whole(src: PhaseSource, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A streamed phase's whole ``(intended offsets, samples, mask)`` (tests and small tools)."""
    if src.schedule is None:
        n = src.sample_count
        return (np.zeros(1, np.int64), sample_rows(src, 0, n),
                mask_values(src.mask, 0, n) if src.mask is not None else None)
    _, intended, samples, mask = regenerate(src, 0, 1, chunk)
    return intended, samples, mask


def regenerate_slice(part: PhaseSlice, chunk: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A streamed :class:`PhaseSlice`'s ``(query ids, intended offsets, samples, mask)``."""
    src = part.source
    assert src is not None
    if src.schedule is None:  # Offline: samples [lo, hi) of the single query
        return (np.array([part.lo], np.int64), np.zeros(1, np.int64), sample_rows(src, part.lo, part.hi),
                mask_values(src.mask, part.lo, part.hi) if src.mask is not None else None)
    return regenerate(src, part.shard, part.shards, chunk)
