"""The asyncio load generator: runs one shard's slice of a plan against one SUT adapter.

One event loop, many queries in flight, no thread per request. What is issued when is the
scenario's (:meth:`Scenario.issue` runs on this runner); this module owns what every scenario
shares: starting and stopping the SUT, loading samples, recording each query, per-query
timeouts, the run deadline, aborts and progress snapshots.

Latency is ``completed - intended`` as in LoadGen (the scheduled time, so lateness counts
against the SUT's latency too); TTFT is ``first_token - intended``.

Every run ends by its deadline: a query outstanding longer than ``query_timeout_ns`` is
recorded as a timeout error and the run stops at once (an unresponsive SUT makes it INVALID;
what else was outstanding is cancelled); at the run deadline, or on :meth:`ShardRunner.abort`,
the issuing loop is cancelled
(even while it sleeps until its next send) and everything outstanding is cancelled. A query
task cancelled before it ever ran is still recorded and released, so draining never waits on
it. What was measured until then is returned.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import numpy as np

from raybench.core.aggregate import RunStats
from raybench.core.eager import start_eagerly
from raybench.core.plan import PhaseSlice, ShardSlice
from raybench.core.protocols import SUT, Clock, Query, Response, SampleLibrary, SUTContext
from raybench.core.recorder import FOLD_ROWS, ShardRecorder
from raybench.core.records import ShardReport, pack_snapshots

__all__ = ["DEFAULT_QUERY_TIMEOUT_S", "ShardRunner"]

DEFAULT_QUERY_TIMEOUT_S = 600.0
LAG_PERIOD_NS = 10_000_000
"""Period of the event-loop lag probe (which also folds completed queries into the statistics)."""


class ShardRunner:
    """Issues one :class:`~raybench.core.plan.ShardSlice` to a SUT and records what happens.

    Lifecycle: ``await prepare()`` (start the SUT, load the first loaded set) -> ``await
    run(t0_ns)`` (issue from T0 on this runner's clock) -> ``await close()``.

    The scenario's issuing loop uses the public members: :attr:`clock`, :attr:`t0`, :meth:`now`,
    :attr:`stopped`, :meth:`request_stop`, :meth:`check_limits`, :attr:`in_flight`,
    :attr:`issued_queries`, :attr:`sut` and the three ``spawn`` methods.

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
        keep_records: ship the per-sample records in the report (``records: all``).
        records_path: write the per-sample records to this ``.npz`` file at the end
            (``records: shard``); if that directory cannot be written on this host, the file
            goes to the host's temp directory and the report says where.
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
        keep_records: bool = False,
        records_path: str | None = None,
    ) -> None:
        self.slice = slice_
        self.effective = slice_.effective
        self.sut = sut
        self.library = library
        self.clock = clock
        self.ctx = ctx
        self.query_timeout_ns = int(query_timeout_s * 1e9)
        self.deadline_ns = int(deadline_s * 1e9) if deadline_s else 0
        self.snapshot_interval_ns = int(snapshot_interval_s * 1e9)
        self.on_snapshot = on_snapshot
        self.report = ShardReport(shard=slice_.shard, node=node or socket.gethostname())
        self._snaps: list[dict[str, Any]] = []
        self.rec = ShardRecorder(slice_, keep_records=keep_records, records_path=records_path,
                                 input_tokens=getattr(library, "input_tokens", None))
        self.buf = self.rec.buf
        self.t0 = 0
        self.issued_queries = 0
        self._outstanding: dict[int, tuple[int, asyncio.Future[None], int]] = {}
        self._started: dict[int, Coroutine[Any, Any, None]] = {}  # row -> its (suspended) query coroutine
        self._cancel_reason: dict[int, str] = {}
        self._idle = asyncio.Event()
        self._stop_reason: str | None = None
        self._abort_reason: str | None = None
        self._issuer: asyncio.Task[None] | None = None
        self._issued_samples = 0
        self._loaded: np.ndarray | None = None
        self._prepared = False

    # ------------------------------------------------------------------ lifecycle
    async def prepare(self) -> None:
        """Start the SUT and load the first loaded set (untimed, before T0)."""
        self._loop = asyncio.get_running_loop()
        self._done_future = self._loop.create_future()
        self._done_future.set_result(None)
        await self.sut.start(self.ctx)
        self._load(self.slice.phases[0].loaded_set)
        for phase in self.slice.phases:  # the issuing loop's lookups, built now rather than at T0
            phase.intended_list()
            phase.query_ids_list()
            phase.samples_list()
        # A full collection now, and everything alive moved out of the collector's reach (until
        # close()): no collection during the run walks the modules, the plan or the SUT's objects.
        gc.collect()
        gc.freeze()
        self._frozen = True
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
        if getattr(self, "_frozen", False):
            gc.unfreeze()
            self._frozen = False
        try:
            await self.sut.stop()
        finally:
            if self._loaded is not None:
                self.library.unload(self._loaded.tolist())
                self._loaded = None

    @property
    def stopped(self) -> bool:
        """Issuing must stop (a limit was reached, or the run was stopped or aborted)."""
        return self._stop_reason is not None

    @property
    def in_flight(self) -> int:
        """Queries outstanding right now."""
        return len(self._outstanding)

    def now(self) -> int:
        """Nanoseconds since T0 on this runner's clock."""
        return self.clock.now_ns() - self.t0

    def request_stop(self, reason: str) -> None:
        """Stop issuing new queries (outstanding ones may still complete)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def abort(self, reason: str) -> None:
        """Stop issuing at once (waking a loop that sleeps until its next send) and cancel every
        outstanding query, recording ``reason``."""
        self.request_stop(reason)
        self._abort_reason = self._abort_reason or reason
        if self._issuer is not None and not self._issuer.done():
            self._issuer.cancel()
        for row, (_, task, _n) in list(self._outstanding.items()):
            self._cancel_reason.setdefault(row, reason)
            task.cancel()

    def progress(self) -> dict[str, Any]:
        """Counters right now (cheap; safe to call from another task)."""
        return {
            "shard": self.slice.shard,
            "issued": self._issued_samples,
            "completed": self.rec.completed_samples,
            "errors": self.rec.error_samples,
            "in_flight": len(self._outstanding),
        }

    def check_limits(self, elapsed_ns: int) -> bool:
        """max_query_count / max_duration: True if issuing must stop."""
        eff = self.effective
        if eff.max_query_count and self.issued_queries >= eff.max_query_count:
            self.request_stop("max query count reached")
        elif eff.max_duration_ms and elapsed_ns >= eff.max_duration_ms * 1_000_000:
            self.request_stop("max duration reached")
        return self._stop_reason is not None

    # ------------------------------------------------------------------ the run
    async def run(self, t0_ns: int) -> ShardReport:
        """Issue the slice starting at ``t0_ns`` (on this runner's clock); returns the report."""
        if not self._prepared:
            await self.prepare()
        self.t0 = t0_ns
        self.report.start_ns = t0_ns
        helpers = [asyncio.ensure_future(self._watchdog()), asyncio.ensure_future(self._lag_probe())]
        if self.snapshot_interval_ns > 0:
            helpers.append(asyncio.ensure_future(self._snapshots()))
        status = "ok"
        try:
            self._issuer = asyncio.ensure_future(self._issue_all())
            try:
                await asyncio.shield(self._issuer)
            except asyncio.CancelledError:
                if self._abort_reason is None or not self._issuer.cancelled():
                    raise  # the run itself was cancelled from outside
            await self._drain()
        except asyncio.CancelledError:
            status = "aborted"
            self.abort("run cancelled (interrupted)")
            await self._drain()
            raise
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._finish(status)
        return self.report

    async def _issue_all(self) -> None:
        await self.clock.sleep_until(self.t0)
        scenario = self.slice.scenario
        for i, phase in enumerate(self.slice.phases):
            if self._stop_reason:
                break
            if i > 0:
                await self._drain()
                self._load(phase.loaded_set)
            await scenario.issue(self, i, phase, 0 if i == 0 else self.now())

    async def _drain(self) -> None:
        """Wait until no query is outstanding.

        A task cancelled before it ever ran never reaches its own bookkeeping, so the outstanding
        set is swept for finished tasks (cheaper than a done-callback on every query).
        """
        while self._outstanding:
            self._idle.clear()
            self._sweep()
            if not self._outstanding:
                break
            try:
                await asyncio.wait_for(self._idle.wait(), 0.05)
            except TimeoutError:
                pass

    def _sweep(self) -> None:
        """Release queries whose task ended without running (cancelled before their first step)."""
        for row, (_, task, n) in list(self._outstanding.items()):
            if task.done():
                self._on_done(row, n)

    def _finish(self, status: str) -> None:
        rep = self.report
        self._snaps.append(self._snapshot(final=True))
        rep.snapshots = pack_snapshots(self._snaps)
        rep.stats = self.current_stats()
        self.rec.fill(rep)
        rep.queries_issued = self.issued_queries
        if self._abort_reason:
            rep.status = "deadline" if self._abort_reason.startswith("deadline") else "aborted"
            rep.failure = self._abort_reason
        elif status != "ok":
            rep.status = status
        rep.end_reason = self._stop_reason or "plan exhausted"

    def current_stats(self) -> RunStats:
        """The shard's statistics so far (every completed query folded in)."""
        return self.rec.stats_now(self._issued_samples, self.issued_queries)

    def records(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """The shard's per-sample records so far and the error reasons their codes refer to."""
        return self.rec.records()

    # ------------------------------------------------------------------ spawning queries
    def spawn(self, phase_i: int, phase: PhaseSlice, q: int, intended_rel: int) -> asyncio.Task[None]:
        """Issue query ``q`` of ``phase`` (its samples and ``seq_id``s come from the plan)."""
        spq = phase.samples_per_query
        qid = phase.query_ids_list()[q]
        a = q * spq
        mask = phase.log_accuracy[a : a + spq] if phase.log_accuracy is not None else None
        indices = phase.samples_list()[a : a + spq]
        return self._spawn(phase_i, qid, phase.seq_base + qid * spq, indices, intended_rel, mask)

    def spawn_batch(self, phase_i: int, phase: PhaseSlice, b0: int, n: int, intended_rel: int) -> asyncio.Task[None]:
        """Offline: issue samples ``[b0, b0 + n)`` of the shard's part of the single query."""
        first = phase.query_ids_list()[0] + b0
        mask = phase.log_accuracy[b0 : b0 + n] if phase.log_accuracy is not None else None
        return self._spawn(phase_i, first, phase.seq_base + first, phase.samples_list()[b0 : b0 + n],
                           intended_rel, mask)

    def spawn_sample(self, phase_i: int, sample: int, stream: int, intended_rel: int) -> tuple[asyncio.Task[None], int]:
        """Closed loop: issue one sample drawn at run time for ``stream`` (no ``seq_id``).

        Returns the task and its record row (see :meth:`completed_at`).
        """
        row = self.buf.size
        return self._spawn(phase_i, stream, -1, [sample], intended_rel, None), row

    def spawn_turn(self, phase_i: int, sample: int, conversation: int, turn: int, intended_rel: int, payload: Any,
                   answers: list[bytes], log: bool = False) -> tuple[asyncio.Task[None], int]:
        """Multi-turn: issue turn ``turn`` (from 1) of ``conversation`` with its own ``payload``; a
        successful answer is appended to ``answers``. ``log``: accuracy-log it (``seq_id`` = sample)."""
        row = self.buf.size
        task = self._spawn(phase_i, conversation, sample if log else -1, [sample], intended_rel,
                           np.ones(1, dtype=bool) if log else None, payload=payload, answers=answers)
        self.buf.cols["turn"][row] = turn
        return task, row

    def completed_at(self, row: int) -> int:
        """When the query recorded at ``row`` completed (ns since T0; 0 if it has not)."""
        return int(self.buf.cols["completed_ns"][row])

    def _spawn(self, phase_i: int, qid: int, seq0: int, indices: list[int], intended_rel: int,
               log_mask: np.ndarray | None, payload: Any = None, answers: list[bytes] | None = None) -> asyncio.Task[None]:
        """Record the query's rows and start its task (scalar writes for one-sample queries)."""
        n = len(indices)
        row = self.buf.reserve(n)
        cols = self.buf.cols
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
        self.issued_queries += 1
        self._issued_samples += n
        return self._start(row, n, self._one(row, n, qid, indices, seq0, log_mask, payload, answers))

    def _start(self, row: int, n: int, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run the query's coroutine now, up to its first suspension (as Python 3.12's eager tasks).

        The SUT sees the query at once instead of one loop turn later, and a query the SUT answers
        without suspending costs no Task at all (a shared finished future stands in for it). A
        query that suspends continues in a Task that resumes the same coroutine.
        """
        self._outstanding[row] = (self.clock.now_ns(), _NO_TASK, n)
        task = start_eagerly(coro, self._loop)
        if task is None:
            return self._done_future
        if row in self._outstanding:
            self._outstanding[row] = (self._outstanding[row][0], task, n)
            self._started[row] = coro
        return task

    async def _one(self, row: int, n: int, qid: int, indices: list[int], seq0: int, log_mask: np.ndarray | None,
                   payload: Any = None, answers: list[bytes] | None = None) -> None:
        clock = self.clock
        get = self.library.get
        samples = [payload] if payload is not None else [get(indices[0])] if n == 1 else [get(i) for i in indices]
        q = Query(id=qid, indices=indices, samples=samples, clock=clock, want_token_data=self.rec.wants_token_data(n, log_mask))
        issued = clock.now_ns() - self.t0
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
        except Exception as exc:  # a SUT failure is a measurement, not a crash
            err = f"{type(exc).__name__}: {exc}"[:300]
            if getattr(exc, "fatal", False):  # e.g. every SUT replica is gone: stop the run
                self.abort(err)
        self.rec.finish(row, n, q, self.t0, clock.now_ns(), resps, err, seq0, indices, log_mask, issued)
        if answers is not None and err is None and resps and not resps[0].error:
            answers.append(bytes(resps[0].data))
        self._release(row)

    def _on_done(self, row: int, n: int) -> None:
        """A query's task ended without finishing it (cancelled before its first step): let the
        query coroutine record the cancellation itself, else record it here; then release it."""
        coro = self._started.pop(row, None)
        if coro is not None:
            try:
                coro.throw(asyncio.CancelledError())
            except (StopIteration, asyncio.CancelledError):
                pass
            except BaseException:  # noqa: BLE001 - whatever it raised, the row is finished below
                pass
        if row not in self._outstanding:
            return
        reason = self._cancel_reason.pop(row, None) or "cancelled before it was sent"
        self.rec.failed(row, n, self.clock.now_ns() - self.t0, reason)
        self._release(row)

    def _release(self, row: int) -> None:
        self._outstanding.pop(row, None)
        self._started.pop(row, None)
        if not self._outstanding:
            self._idle.set()

    # ------------------------------------------------------------------ background tasks
    async def _watchdog(self) -> None:
        """Cancel queries past their timeout, and stop everything at the run deadline."""
        clock = self.clock
        period = max(1_000_000, min(self.query_timeout_ns // 4, 250_000_000))
        while True:
            now = clock.now_ns()
            if self.deadline_ns and now - self.t0 >= self.deadline_ns:
                self.abort(f"deadline of {self.deadline_ns / 1e9:.1f}s reached")
                return
            if self.query_timeout_ns:
                self._sweep()
                late = [row for row, (t_issue, _, _n) in self._outstanding.items() if now - t_issue > self.query_timeout_ns]
                if late:
                    reason = f"timeout: no response within {self.query_timeout_ns / 1e9:g}s"
                    for row in late:
                        self._cancel_reason[row] = reason
                    # One query past its timeout means the SUT stopped answering: stop now rather
                    # than wait out every other query's own timeout.
                    self.abort(f"SUT unresponsive ({reason})")
                    return
            wake = now + period
            if self.deadline_ns:
                wake = min(wake, self.t0 + self.deadline_ns)
            await clock.sleep_until(wake)

    async def _lag_probe(self) -> None:
        """Every 10 ms from T0, record how late the loop woke this task: an event loop too busy
        to run its timers on time delays every query's send and completion, whatever the scenario."""
        clock = self.clock
        nxt = self.t0
        lags: list[int] = []
        try:
            while True:
                await clock.nap_until(nxt)
                lags.append(clock.now_ns() - nxt)
                if self.rec.waiting() >= FOLD_ROWS:
                    self.rec.fold()
                if len(lags) >= 100:
                    self.rec.stats.loop_lag.record_many(np.asarray(lags, dtype=np.int64))
                    lags.clear()
                nxt += LAG_PERIOD_NS
                now = clock.now_ns()
                if now > nxt:  # skip the periods missed while the loop was stuck (one lag covers them)
                    nxt += (now - nxt) // LAG_PERIOD_NS * LAG_PERIOD_NS
        finally:
            self.rec.stats.loop_lag.record_many(np.asarray(lags, dtype=np.int64))

    def _snapshot(self, final: bool = False) -> dict[str, Any]:
        """Progress now: counters plus the p50/p99 latency and p99 lateness of the samples that
        completed since the previous snapshot (from histograms filled as the queries are folded, so
        a snapshot costs the loop well under a millisecond at any rate)."""
        window = self.rec.window()
        return {"t_ns": self.clock.now_ns() - self.t0, "wall_ns": time.time_ns(), **self.progress(), **window,
                "final": final}

    async def _snapshots(self) -> None:
        clock = self.clock
        nxt = self.t0 + self.snapshot_interval_ns
        while True:
            await clock.sleep_until(nxt)
            nxt += self.snapshot_interval_ns
            snap = self._snapshot()
            self._snaps.append(snap)
            if self.on_snapshot is not None:
                self.on_snapshot(snap)


class _NoTask:
    """Placeholder in the outstanding table while a query's coroutine runs its first step."""

    @staticmethod
    def done() -> bool:
        return False

    cancel = done


_NO_TASK: Any = _NoTask()

