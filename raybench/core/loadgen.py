"""The asyncio load generator: runs one shard's slice of a plan against one SUT adapter.

One event loop, many queries in flight, no thread per request. The issuing loop of each
scenario follows LoadGen:

* **Server** (and every shard of a multi-shard Server run): each query is sent at its
  scheduled offset from T0, whether or not earlier queries have completed. When the loop
  falls behind it sends what is due at once and the delay is recorded as *lateness*
  (actual - intended send), so a harness that cannot keep up is visible, never hidden.
* **SingleStream / MultiStream**: the next query is sent when the previous one completes;
  issuing stops once both ``min_query_count`` and ``min_duration`` are met.
* **Offline**: the shard's share of the single query is cut into batches of ``sut.max_batch``
  samples with at most ``sut.max_inflight`` batches outstanding.
* **Concurrency** (closed loop, MLPerf Endpoints style): each stream sends its next query as
  soon as its previous one completes.

Latency is ``completed - intended`` as in LoadGen (the scheduled time, so lateness counts
against the SUT's latency too); TTFT is ``first_token - intended``.

Every run ends by its deadline: a query outstanding longer than ``query_timeout_ns`` is
cancelled and recorded as an error (and issuing stops: an unresponsive SUT makes the run
INVALID), and at the run deadline everything still outstanding is cancelled. What was
measured until then is returned.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from raybench.core.histogram import Histogram
from raybench.core.plan import CLOSED_LOOP, Phase, ShardSlice, stream_samples
from raybench.core.protocols import SUT, Clock, Query, Response, SampleLibrary, SUTContext
from raybench.core.records import RecordBuffer, ShardReport

__all__ = ["ShardRunner", "DEFAULT_QUERY_TIMEOUT_S"]

DEFAULT_QUERY_TIMEOUT_S = 600.0
_MAX_ERROR_KINDS = 64
_MAX_TOKEN_GAPS = 5_000_000
_OFFLINE_DEFAULT_INFLIGHT = 256


class ShardRunner:
    """Issues one :class:`~raybench.core.plan.ShardSlice` to a SUT and records what happens.

    Lifecycle: ``await prepare()`` (start the SUT, load the first loaded set) -> ``await
    run(t0_ns)`` (issue from T0 on this runner's clock) -> ``await close()``.

    Args:
        slice_: this shard's part of the plan.
        sut: the SUT adapter (in-process SUT or a proxy to remote replicas).
        library: the sample library; payloads of issued samples go into ``Query.samples``.
        clock: the clock (real or virtual).
        ctx: what the SUT is told about the run.
        query_timeout_s: a query outstanding longer than this is cancelled as an error.
        deadline_s: hard end of the run, counted from T0 (``None``: no deadline beyond the
            per-query timeout and ``max_duration``).
        snapshot_interval_s: period of progress snapshots.
        on_snapshot: called with every snapshot dict (live progress).
        node: label of the machine this shard runs on (for reports).
    """

    def __init__(
        self,
        slice_: ShardSlice,
        sut: SUT,
        library: SampleLibrary,
        clock: Clock,
        *,
        ctx: SUTContext,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
        deadline_s: float | None = None,
        snapshot_interval_s: float = 1.0,
        on_snapshot: Callable[[dict[str, Any]], None] | None = None,
        node: str | None = None,
    ) -> None:
        self.slice = slice_
        self.plan = slice_.plan
        self.eff = slice_.plan.effective
        self.sut = sut
        self.library = library
        self.clock = clock
        self.ctx = ctx
        self.query_timeout_ns = int(query_timeout_s * 1e9)
        self.deadline_ns = int(deadline_s * 1e9) if deadline_s else 0
        self.snapshot_interval_ns = int(snapshot_interval_s * 1e9)
        self.on_snapshot = on_snapshot
        self.report = ShardReport(shard=slice_.shard, node=node or socket.gethostname())
        self.buf = RecordBuffer(self._capacity())
        self._error_codes: dict[str, int] = {}
        self._outstanding: dict[int, tuple[int, asyncio.Task[None]]] = {}
        self._cancel_reason: dict[int, str] = {}
        self._idle = asyncio.Event()
        self._stop_reason: str | None = None
        self._abort_reason: str | None = None
        self._t0 = 0
        self._issued_queries = 0
        self._issued_samples = 0
        self._completed_samples = 0
        self._error_samples = 0
        self._done_rows: list[int] = []
        self._done_ptr = 0
        self._token_gaps: list[np.ndarray] = []
        self._n_token_gaps = 0
        self._loaded: np.ndarray | None = None
        self._prepared = False

    # ------------------------------------------------------------------ lifecycle
    def _capacity(self) -> int:
        if self.eff.scenario == CLOSED_LOOP and not self.plan.accuracy_log_all:
            return 4096
        total = 0
        for phase, ids in zip(self.plan.phases, self.slice.query_ids, strict=True):
            if self.eff.scenario == "Offline":
                total += int(ids[1] - ids[0])
            else:
                total += int(ids.shape[0]) * phase.samples_per_query
        return total

    async def prepare(self) -> None:
        """Start the SUT and load the first loaded set (untimed, before T0)."""
        await self.sut.start(self.ctx)
        self._load(self.plan.phases[0].loaded_set)
        self.report.sut_name = getattr(self.sut, "name", type(self.sut).__name__)
        self._prepared = True

    def _load(self, loaded: np.ndarray) -> None:
        if self._loaded is not None:
            self.library.unload(self._loaded.tolist())
        unique = np.unique(loaded)
        self.library.load(unique.tolist())
        self._loaded = unique

    async def close(self) -> None:
        """Stop the SUT and unload samples; safe to call twice."""
        try:
            await self.sut.stop()
        finally:
            if self._loaded is not None:
                self.library.unload(self._loaded.tolist())
                self._loaded = None

    def request_stop(self, reason: str) -> None:
        """Stop issuing new queries (outstanding ones may still complete)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def abort(self, reason: str) -> None:
        """Stop issuing and cancel every outstanding query, recording ``reason``."""
        self.request_stop(reason)
        self._abort_reason = self._abort_reason or reason
        for row, (_, task) in list(self._outstanding.items()):
            self._cancel_reason.setdefault(row, reason)
            task.cancel()

    def progress(self) -> dict[str, Any]:
        """Counters right now (cheap; safe to call from another task)."""
        return {
            "shard": self.slice.shard,
            "issued": self._issued_samples,
            "completed": self._completed_samples,
            "errors": self._error_samples,
            "in_flight": len(self._outstanding),
        }

    # ------------------------------------------------------------------ the run
    async def run(self, t0_ns: int) -> ShardReport:
        """Issue the slice starting at ``t0_ns`` (on this runner's clock); returns the report."""
        if not self._prepared:
            await self.prepare()
        self._t0 = t0_ns
        self.report.start_ns = t0_ns
        await self.clock.sleep_until(t0_ns)
        helpers = [asyncio.ensure_future(self._watchdog())]
        if self.snapshot_interval_ns > 0:
            helpers.append(asyncio.ensure_future(self._snapshots()))
        status = "ok"
        try:
            for i, phase in enumerate(self.plan.phases):
                if self._stop_reason:
                    break
                if i > 0:
                    await self._drain()
                    self._load(phase.loaded_set)
                phase_start = 0 if i == 0 else self.clock.now_ns() - self._t0
                await self._run_phase(i, phase, phase_start)
            await self._drain()
        except asyncio.CancelledError:
            status = "aborted"
            self.abort("run cancelled (interrupted)")
            await self._drain(shield=True)
            raise
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._finish(status)
        return self.report

    async def _drain(self, shield: bool = False) -> None:
        while self._outstanding:
            self._idle.clear()
            if not self._outstanding:
                break
            if shield:
                await asyncio.gather(*(t for _, t in self._outstanding.values()), return_exceptions=True)
            else:
                await self._idle.wait()

    def _finish(self, status: str) -> None:
        rep = self.report
        rep.records = self.buf.freeze()
        rep.errors = list(self._error_codes)
        rep.queries_issued = self._issued_queries
        rep.snapshots.append(self._snapshot(final=True))
        if self._token_gaps:
            rep.token_gaps_ns = np.concatenate(self._token_gaps)
        if self._abort_reason:
            rep.status = "deadline" if self._abort_reason.startswith("deadline") else "aborted"
            rep.failure = self._abort_reason
        elif status != "ok":
            rep.status = status
        rep.end_reason = self._stop_reason or "plan exhausted"

    # ------------------------------------------------------------------ scenarios
    async def _run_phase(self, phase_i: int, phase: Phase, start: int) -> None:
        ids = self.slice.query_ids[phase_i]
        sc = self.eff.scenario
        if sc == "Offline":
            await self._run_offline(phase_i, phase, int(ids[0]), int(ids[1]), start)
        elif sc == CLOSED_LOOP:
            await self._run_closed_loop(phase_i, phase, ids, start)
        elif sc == "Server":
            await self._run_scheduled(phase_i, phase, ids, start)
        else:
            await self._run_serial(phase_i, phase, ids, start)

    def _check_limits(self, elapsed_ns: int) -> bool:
        """max_query_count / max_duration / run deadline: True if issuing must stop."""
        eff = self.eff
        if eff.max_query_count and self._issued_queries >= eff.max_query_count:
            self.request_stop("max query count reached")
        elif eff.max_duration_ms and elapsed_ns >= eff.max_duration_ms * 1_000_000:
            self.request_stop("max duration reached")
        return self._stop_reason is not None

    async def _run_scheduled(self, phase_i: int, phase: Phase, ids: np.ndarray, start: int) -> None:
        clock = self.clock
        t0 = self._t0
        spq = phase.samples_per_query
        intended = phase.intended_ns[ids] + start
        max_async = self.eff.max_async_queries
        loop = asyncio.get_running_loop()
        n = int(ids.shape[0])
        i = 0
        while i < n:
            target = int(intended[i])
            now = clock.now_ns() - t0
            if now < target:
                await clock.sleep_until(t0 + target)
                now = clock.now_ns() - t0
            # Send everything that is due (catching up if we fell behind).
            while i < n and int(intended[i]) <= now:
                if self._check_limits(now):
                    return
                if max_async and len(self._outstanding) > max_async:
                    self.request_stop("server_max_async_queries exceeded")
                    return
                qid = int(ids[i])
                self._spawn(loop, phase_i, phase, qid, spq, int(intended[i]))
                i += 1
            if i < n:
                await asyncio.sleep(0)  # let completions run between bursts
            if self._stop_reason:
                return

    async def _run_serial(self, phase_i: int, phase: Phase, ids: np.ndarray, start: int) -> None:
        clock = self.clock
        t0 = self._t0
        spq = phase.samples_per_query
        eff = self.eff
        perf = not self.plan.accuracy_log_all
        min_dur = eff.min_duration_ms * 1_000_000
        loop = asyncio.get_running_loop()
        for qid in ids.tolist():
            if self._stop_reason:
                return
            now = clock.now_ns() - t0
            task = self._spawn(loop, phase_i, phase, qid, spq, now)
            await asyncio.gather(task, return_exceptions=True)
            # LoadGen checks the stop conditions after each issue, with that query's issue time.
            if perf and self._issued_queries >= eff.min_query_count and now >= min_dur:
                self.request_stop("min duration and min queries met")
            if self._check_limits(now):
                return
        if perf and not self._stop_reason:
            self.request_stop("ran out of generated queries")

    async def _run_offline(self, phase_i: int, phase: Phase, lo: int, hi: int, start: int) -> None:
        batch = max(1, int(getattr(self.sut, "max_batch", 1) or 1))
        cap = int(getattr(self.sut, "max_inflight", 0) or 0) or _OFFLINE_DEFAULT_INFLIGHT
        sem = asyncio.Semaphore(cap)
        loop = asyncio.get_running_loop()
        for b0 in range(lo, hi, batch):
            await sem.acquire()
            if self._stop_reason or self._check_limits(self.clock.now_ns() - self._t0):
                sem.release()
                return
            b1 = min(hi, b0 + batch)
            task = self._spawn(loop, phase_i, phase, b0, b1 - b0, start, first_sample=b0)
            task.add_done_callback(lambda _t: sem.release())

    async def _run_closed_loop(self, phase_i: int, phase: Phase, ids: np.ndarray, start: int) -> None:
        streams = self.slice.streams if self.slice.streams is not None else np.zeros(0, np.int64)
        if self.plan.accuracy_log_all:
            queue = list(ids.tolist())
            queue.reverse()
            workers = [self._accuracy_stream(phase_i, phase, queue) for _ in range(max(1, len(streams)))]
        else:
            share = len(streams) / max(1, self.eff.concurrency)
            min_queries = int(np.ceil(self.eff.min_query_count * share))
            workers = [self._stream(phase_i, phase, int(s), min_queries, start) for s in streams]
        await asyncio.gather(*workers)

    async def _stream(self, phase_i: int, phase: Phase, stream: int, min_queries: int, start: int) -> None:
        min_dur = self.eff.min_duration_ms * 1_000_000
        loop = asyncio.get_running_loop()
        pos = 0
        chunk = np.zeros(0, dtype=np.int64)
        while not self._stop_reason:
            now = self.clock.now_ns() - self._t0
            if pos % 256 == 0:
                chunk = stream_samples(self.plan, stream, 256, start=pos)
            sample = int(chunk[pos % 256])
            pos += 1
            task = self._spawn(loop, phase_i, phase, -1, 1, now, sample=sample, stream=stream)
            await asyncio.gather(task, return_exceptions=True)
            if self._issued_queries >= min_queries and now >= min_dur:
                self.request_stop("min duration and min queries met")
            self._check_limits(now)

    async def _accuracy_stream(self, phase_i: int, phase: Phase, queue: list[int]) -> None:
        loop = asyncio.get_running_loop()
        while queue and not self._stop_reason:
            qid = queue.pop()
            now = self.clock.now_ns() - self._t0
            task = self._spawn(loop, phase_i, phase, qid, 1, now)
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ one query
    def _spawn(
        self,
        loop: asyncio.AbstractEventLoop,
        phase_i: int,
        phase: Phase,
        qid: int,
        n: int,
        intended_rel: int,
        *,
        first_sample: int | None = None,
        sample: int | None = None,
        stream: int = -1,
    ) -> asyncio.Task[None]:
        """Record the query's rows and start its task (scalar writes for one-sample queries)."""
        row = self.buf.reserve(n)
        cols = self.buf.cols
        if sample is not None:
            indices = [sample]
            seq0 = -1
            qid = stream
        else:
            s0 = first_sample if first_sample is not None else qid * phase.samples_per_query
            seq0 = phase.seq_base + s0
            indices = [int(phase.samples[s0])] if n == 1 else phase.samples[s0 : s0 + n].tolist()
        if n == 1:
            cols["query_id"][row] = qid
            cols["phase"][row] = phase_i
            cols["seq_id"][row] = seq0
            cols["sample_index"][row] = indices[0]
            cols["intended_ns"][row] = intended_rel
        else:
            rows = slice(row, row + n)
            cols["query_id"][rows] = qid
            cols["phase"][rows] = phase_i
            cols["seq_id"][rows] = np.arange(seq0, seq0 + n, dtype=np.int64) if seq0 >= 0 else -1
            cols["sample_index"][rows] = indices
            cols["intended_ns"][rows] = intended_rel
        log_mask = None
        if not self.plan.accuracy_log_all and phase.log_accuracy is not None and seq0 >= 0:
            off = seq0 - phase.seq_base
            log_mask = phase.log_accuracy[off : off + n]
        self._issued_queries += 1
        self._issued_samples += n
        task = loop.create_task(self._one(row, n, qid, indices, seq0, log_mask))
        self._outstanding[row] = (self.clock.now_ns(), task)
        return task

    async def _one(self, row: int, n: int, qid: int, indices: list[int], seq0: int, log_mask: np.ndarray | None) -> None:
        clock = self.clock
        get = self.library.get
        q = Query(id=qid, indices=indices, samples=[get(i) for i in indices], clock=clock)
        issued = clock.now_ns() - self._t0
        if n == 1:
            self.buf.cols["issued_ns"][row] = issued
        else:
            self.buf.cols["issued_ns"][row : row + n] = issued
        err: str | None = None
        resps: Sequence[Response] = ()
        try:
            resps = await self.sut.issue(q)
            if len(resps) != n:
                err = f"SUT returned {len(resps)} responses for {n} samples"
        except asyncio.CancelledError:
            err = self._cancel_reason.pop(row, None) or "cancelled"
            if err == "cancelled":
                self._finish_query(row, n, q, clock.now_ns(), (), err, seq0, indices, log_mask)
                self._release(row)
                raise
        except Exception as exc:  # a SUT failure is a measurement, not a crash
            err = f"{type(exc).__name__}: {exc}"[:300]
            if getattr(exc, "fatal", False):  # e.g. every SUT replica is gone: stop the run
                self.abort(err)
        self._finish_query(row, n, q, clock.now_ns(), resps, err, seq0, indices, log_mask)
        self._release(row)

    def _release(self, row: int) -> None:
        self._outstanding.pop(row, None)
        if not self._outstanding:
            self._idle.set()

    def _code(self, reason: str) -> int:
        code = self._error_codes.get(reason)
        if code is None:
            if len(self._error_codes) >= _MAX_ERROR_KINDS:
                reason = "other errors (too many distinct reasons)"
                code = self._error_codes.get(reason)
                if code is not None:
                    return code
            code = len(self._error_codes) + 1
            self._error_codes[reason] = code
        return code

    def _finish_query(
        self,
        row: int,
        n: int,
        q: Query,
        done: int,
        resps: Sequence[Response],
        err: str | None,
        seq0: int,
        indices: list[int],
        log_mask: np.ndarray | None,
    ) -> None:
        cols = self.buf.cols
        t0 = self._t0
        rows: slice | int = row if n == 1 else slice(row, row + n)
        cols["completed_ns"][rows] = done - t0
        if q.first_token_ns:
            cols["first_token_ns"][rows] = q.first_token_ns - t0
        if q.token_ns and len(q.token_ns) > 1 and self._n_token_gaps < _MAX_TOKEN_GAPS:
            gaps = np.diff(np.asarray(q.token_ns, dtype=np.int64))
            self._token_gaps.append(gaps)
            self._n_token_gaps += gaps.shape[0]
        if err is not None:
            cols["error"][rows] = self._code(err)
            self._error_samples += n
        else:
            log_all = self.plan.accuracy_log_all
            acc = self.report.accuracy
            for j, r in enumerate(resps):
                if r.error:
                    cols["error"][row + j] = self._code(r.error)
                    self._error_samples += 1
                    continue
                if r.n_tokens:
                    cols["n_tokens"][row + j] = r.n_tokens
                if log_all or (log_mask is not None and log_mask[j]):
                    acc.append((seq0 + j, indices[j], bytes(r.data)))
        self._completed_samples += n
        self._done_rows.append(row)

    # ------------------------------------------------------------------ background tasks
    async def _watchdog(self) -> None:
        """Cancel queries past their timeout and everything at the run deadline."""
        clock = self.clock
        period = max(1_000_000, min(self.query_timeout_ns // 4, 250_000_000))
        while True:
            now = clock.now_ns()
            if self.deadline_ns and now - self._t0 >= self.deadline_ns:
                self.abort(f"deadline of {self.deadline_ns / 1e9:.1f}s reached")
                return
            if self.query_timeout_ns:
                late = [
                    row
                    for row, (t_issue, _) in self._outstanding.items()
                    if now - t_issue > self.query_timeout_ns
                ]
                if late:
                    reason = f"timeout: no response within {self.query_timeout_ns / 1e9:g}s"
                    for row in late:
                        self._cancel_reason[row] = reason
                        self._outstanding[row][1].cancel()
                    self.request_stop(f"SUT unresponsive ({reason})")
                    self._abort_reason = self._abort_reason or f"SUT unresponsive ({reason})"
            wake = now + period
            if self.deadline_ns:
                wake = min(wake, self._t0 + self.deadline_ns)
            await clock.sleep_until(wake)

    def _snapshot(self, final: bool = False) -> dict[str, Any]:
        cols = self.buf.cols
        rows = self._done_rows[self._done_ptr :]
        self._done_ptr = len(self._done_rows)
        snap: dict[str, Any] = {
            "t_ns": self.clock.now_ns() - self._t0,
            "wall_ns": time.time_ns(),
            **self.progress(),
        }
        if rows:
            r = np.asarray(rows, dtype=np.int64)
            lat = cols["completed_ns"][r] - cols["intended_ns"][r]
            late = cols["issued_ns"][r] - cols["intended_ns"][r]
            h = Histogram()
            h.record_many(np.maximum(lat, 0))
            lh = Histogram()
            lh.record_many(np.maximum(late, 0))
            snap.update(
                window_completed=int(r.shape[0]),
                p50_ns=h.percentile(0.5),
                p99_ns=h.percentile(0.99),
                lateness_p99_ns=lh.percentile(0.99),
                latency_hist=h.to_dict(),
                lateness_hist=lh.to_dict(),
            )
        else:
            snap["window_completed"] = 0
        snap["final"] = final
        return snap

    async def _snapshots(self) -> None:
        clock = self.clock
        nxt = self._t0 + self.snapshot_interval_ns
        while True:
            await clock.sleep_until(nxt)
            nxt += self.snapshot_interval_ns
            snap = self._snapshot()
            self.report.snapshots.append(snap)
            if self.on_snapshot is not None:
                self.on_snapshot(snap)
