"""SUT-side streaming gate for DLRMv3: timestamp t is served before t+1 starts.

The plan decides *what* is issued: the workload's library gives the streaming order
(``DLRMv3Library.issue_order``: timestamp by timestamp, each timestamp's requests ``repeats``
times, the reference's ``StreamingQuerySampler``) and the harness issues it, the k-th sample
of the run being ``order[k % len(order)]``. A query's j-th sample is at plan position
``query.id + j`` (Server: ``query.id`` is the query's global index; Offline: the index of the
batch's first sample in the single query). The SUT serves the samples the query carries; this
object only tells it *when*: :meth:`StreamingScheduler.slot` maps a position to its timestamp
phase (and the library index the plan must have put there, which the SUT checks), and
:meth:`~StreamingScheduler.claim` / :meth:`~StreamingScheduler.release_many` gate execution.

Phases: with ``counts[t]`` requests at inference timestamp ``t`` and ``repeats`` r, phase
``t`` has quota ``r * counts[t]`` positions and its j-th position serves request
``offset[t] + j % counts[t]``. After the last timestamp the order wraps around to the first
(an "epoch"); phase number ``e * n_ts + t`` keeps increasing, so the gate stays monotone.

Two gating rules (a sample of phase p starts only when the phases before p are complete):

* **Strict** (``strict=True``; the shared scheduler actor, ``global_order``, which sees every
  position of the run from every replica): phase p may run once every one of the ``quota``
  positions of each earlier phase was released. The frontier (lowest incomplete phase)
  advances only when a phase's quota is fully released. No deadlock: every position before a
  waiting one is eventually issued by the plan (which issues positions in increasing order,
  per load shard), and the lowest claimed position can always run.
* **Local** (``strict=False``; an in-process scheduler, one per SUT instance, i.e. one per
  load shard): an instance sees only its shard's positions, so waiting for a full quota would
  deadlock with several shards. The rule is: a phase-p sample waits until no *claimed*
  (arrived, not yet released) position of an earlier phase is outstanding in this instance.
  With one shard the plan issues positions in increasing order, so every earlier position has
  been claimed by the time a later one arrives and this equals the strict rule; with several
  shards each instance keeps its own queries in timestamp order.

A query's samples may span phases (Offline batches): the caller serves them phase by phase
and releases each group before waiting for the next (no self-deadlock). A position must be
released even when serving it failed.

The same object, hosted as one named Ray actor per run (``raybench.ray.shared.named_actor``),
serves every replica; the batch methods (:meth:`claim`, :meth:`wait_slots`,
:meth:`release_many`) keep it to two calls per query.

Order log (``log_path``): one CSV row per released position, ``seq,phase,ts_idx,index,client,
granted_ns,released_ns`` (``seq`` = plan position) on this object's own monotonic clock
(``client`` is what the caller of :meth:`claim` passed, e.g. its process id). A replica starts
serving a sample only after the grant reached it and reports the release only after serving
it, so ``granted_ns`` is no later than the real start and ``released_ns`` no earlier than the
real end: "every grant of phase p+1 is after every release of phase p" in the log implies the
same of the real executions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Slot", "StreamingScheduler"]


@dataclass(frozen=True, slots=True)
class Slot:
    """One plan position and where it falls in the streaming order.

    Attributes:
        seq: plan position (the k-th sample of the run).
        phase: ``epoch * n_ts + ts_idx``; the gate is on phases.
        ts_idx: inference timestamp index.
        index: library index the streaming order serves at this position.
    """

    seq: int
    phase: int
    ts_idx: int
    index: int


class StreamingScheduler:
    """Maps plan positions to timestamp phases and gates their execution.

    Args:
        counts_per_ts: requests per inference timestamp (``DLRMv3Library.counts_per_ts``).
        repeats: times each timestamp's requests are issued before moving on (the workload's
            ``repeats``; 1 in accuracy runs, which issue every request once).
        log_path: append one CSV row per released position here (see the module docstring).
        strict: the strict rule (shared actor) or the local rule (see the module docstring).
    """

    def __init__(self, counts_per_ts: Sequence[int], repeats: int = 1,
                 log_path: str | None = None, *, strict: bool = True) -> None:
        counts = [int(c) for c in counts_per_ts]
        if not counts or sum(counts) == 0 or min(counts) < 0:
            raise ValueError(f"StreamingScheduler: counts_per_ts must be >= 0 with a positive sum, "
                             f"got {counts}")
        if repeats < 1:
            raise ValueError(f"StreamingScheduler: repeats must be >= 1, got {repeats}")
        self.counts = counts
        self.repeats = int(repeats)
        self.strict = bool(strict)
        self.quota = [c * self.repeats for c in counts]
        self.offsets = [sum(counts[:t]) for t in range(len(counts))]
        self._phase_starts = [sum(self.quota[:t]) for t in range(len(counts))]
        self.slots_per_epoch = sum(self.quota)
        self._frontier = self._skip_empty(0)       # strict: lowest phase with unreleased positions
        self._done: dict[int, int] = {}            # strict: phase -> released positions
        self._outstanding: dict[int, int] = {}     # local: phase -> claimed, unreleased positions
        self._cond: asyncio.Condition | None = None
        self.max_waiting = 0
        self._waiting = 0
        self.claimed = 0
        self.released = 0
        self._granted: dict[int, int] = {}
        self._client: dict[int, str] = {}
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        if self._log is not None and self._log.tell() == 0:
            self._log.write("seq,phase,ts_idx,index,client,granted_ns,released_ns\n")

    @property
    def frontier(self) -> int:
        """Strict rule: the lowest phase not yet complete (its positions may run)."""
        return self._frontier

    def _skip_empty(self, phase: int) -> int:
        n = len(self.counts)
        while self.quota[phase % n] == 0:
            phase += 1
        return phase

    def slot(self, position: int) -> Slot:
        """The slot of plan position ``position`` (pure function).

        Raises:
            ValueError: a negative position.
        """
        if position < 0:
            raise ValueError(f"StreamingScheduler: plan position must be >= 0, got {position}")
        epoch, within = divmod(int(position), self.slots_per_epoch)
        t = 0
        while t + 1 < len(self.counts) and self._phase_starts[t + 1] <= within:
            t += 1
        j = within - self._phase_starts[t]
        return Slot(int(position), epoch * len(self.counts) + t, t, self.offsets[t] + j % self.counts[t])

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def ready(self, slot: Slot) -> bool:
        """Whether ``slot`` may run now (under this scheduler's rule)."""
        if self.strict:
            return slot.phase <= self._frontier
        return all(p >= slot.phase for p in self._outstanding)

    async def wait_ready(self, slot: Slot) -> None:
        """Wait until ``slot`` may run."""
        if self.ready(slot):
            return
        cond = self._condition()
        async with cond:
            self._waiting += 1
            self.max_waiting = max(self.max_waiting, self._waiting)
            try:
                await cond.wait_for(lambda: self.ready(slot))
            finally:
                self._waiting -= 1

    async def wait_slots(self, slots: Sequence[Slot]) -> None:
        """Wait until the (common) phase of ``slots`` may run and note their grant time."""
        await self.wait_ready(max(slots, key=lambda s: s.phase))
        if self._log is not None:
            now = time.monotonic_ns()
            for s in slots:
                self._granted[s.seq] = now

    def claim_now(self, positions: Sequence[int], client: str = "") -> list[Slot]:
        """Register ``positions`` as arrived without waiting (synchronous callers)."""
        slots = [self.slot(p) for p in positions]
        self.claimed += len(slots)
        for s in slots:
            if not self.strict:
                self._outstanding[s.phase] = self._outstanding.get(s.phase, 0) + 1
            if self._log is not None:
                self._client[s.seq] = client
        return slots

    async def claim(self, positions: Sequence[int], client: str = "") -> list[Slot]:
        """Register the plan positions of one query's samples and wait until the lowest phase
        among them may run (one call for the common case of a query within one timestamp).

        Returns the slots in the order of ``positions``; ``client`` goes to the order log.
        Later phases of the same query are waited for with :meth:`wait_slots`. Cancelled while
        waiting (the run is ending), the positions are released, so the gate is not wedged.
        """
        slots = self.claim_now(positions, client)
        if slots:
            first = min(s.phase for s in slots)
            try:
                await self.wait_slots([s for s in slots if s.phase == first])
            except asyncio.CancelledError:      # the caller never gets the slots: release them here
                await self.release_many(slots)
                raise
        return slots

    async def release_many(self, slots: Sequence[Slot]) -> None:
        """Release several slots (also on failure)."""
        advanced = False
        for s in slots:
            advanced |= self._release(s)
        if advanced and self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    async def release(self, slot: Slot) -> None:
        """Release one slot (also on failure); may open the next phase."""
        await self.release_many([slot])

    def _release(self, slot: Slot) -> bool:
        """Mark a slot completed; whether a waiter may have become ready."""
        self.released += 1
        if self._log is not None:
            g = self._granted.pop(slot.seq, -1)
            who = self._client.pop(slot.seq, "")
            self._log.write(f"{slot.seq},{slot.phase},{slot.ts_idx},{slot.index},{who},{g},"
                            f"{time.monotonic_ns()}\n")
        if not self.strict:
            left = self._outstanding.get(slot.phase, 0) - 1
            if left > 0:
                self._outstanding[slot.phase] = left
                return False
            self._outstanding.pop(slot.phase, None)
            return True
        self._done[slot.phase] = self._done.get(slot.phase, 0) + 1
        advanced = False
        n = len(self.counts)
        while self._done.get(self._frontier, 0) >= self.quota[self._frontier % n]:
            self._done.pop(self._frontier, None)
            self._frontier = self._skip_empty(self._frontier + 1)
            advanced = True
        return advanced

    def stats(self) -> dict[str, int]:
        """Counters: positions claimed and released, current frontier phase (strict rule), peak
        waiters."""
        return {"claimed": self.claimed, "released": self.released, "frontier": self._frontier,
                "max_waiting": self.max_waiting}

    def close(self) -> None:
        """Close the order log (if any)."""
        if self._log is not None:
            self._log.close()
            self._log = None
