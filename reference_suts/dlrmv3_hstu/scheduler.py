"""SUT-side streaming order for DLRMv3: all of timestamp t completes before t+1 starts.

LoadGen (and our harness) issues samples in its own random order and with any concurrency,
and has no notion of DLRMv3's timestamps. As in the reference (``StreamingQuerySampler`` in
``main.py``), the SUT therefore decides *which* request a query serves: the ``k``-th query
that arrives is given execution slot ``k``, slots are laid out timestamp by timestamp (within a
timestamp in the library's seeded shuffled order), and a slot of a later timestamp ("phase")
is held back until every slot of all earlier phases has completed.

Phases: with ``counts[t]`` requests at inference timestamp ``t`` and ``repeats`` r, phase
``t`` has quota ``r * counts[t]`` and its j-th slot serves request ``offset[t] + j % counts[t]``
(the reference's ``num_repeats``). After the last timestamp the order wraps around to the first
(an "epoch"), so any number of queries can be served; phase number ``e * n_ts + t`` keeps
increasing, so the gate stays monotone.

No deadlock whatever the concurrency cap: slots are assigned in arrival order, so every slot a
waiting query depends on was handed to an earlier query, which is itself either running or
waiting only on still earlier slots. A slot must be released even when serving it failed.

Global order across replicas: the same object, hosted as one named Ray actor per run
(``raybench.ray.shared.named_actor``), serves every replica; the batch methods
(:meth:`take`, :meth:`wait_slots`, :meth:`release_many`) keep it to two calls per query.

Order log (``log_path``): one CSV row per released slot, ``seq,phase,ts_idx,index,client,
granted_ns,released_ns`` on this object's own monotonic clock (``client`` is what the caller of
:meth:`take` passed, e.g. its process id). A replica starts serving a slot only after
the grant reached it and reports the release only after serving it, so ``granted_ns`` is no later
than the real start and ``released_ns`` no earlier than the real end: "every grant of phase p+1
is after every release of phase p" in the log implies the same of the real executions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Slot", "StreamingScheduler"]


@dataclass(frozen=True, slots=True)
class Slot:
    """One execution slot.

    Attributes:
        seq: arrival number (0, 1, 2, ...).
        phase: ``epoch * n_ts + ts_idx``; the gate is on phases.
        ts_idx: inference timestamp index.
        index: library (streaming-order) index of the request to serve.
    """

    seq: int
    phase: int
    ts_idx: int
    index: int


class StreamingScheduler:
    """Assigns arriving queries to slots and gates them by timestamp.

    Args:
        counts_per_ts: requests per inference timestamp (``DLRMv3Library.counts_per_ts``).
        repeats: times each timestamp's requests are served before moving on.
        log_path: append one CSV row per released slot here (see the module docstring).
    """

    def __init__(self, counts_per_ts: Sequence[int], repeats: int = 1,
                 log_path: str | None = None) -> None:
        counts = [int(c) for c in counts_per_ts]
        if not counts or sum(counts) == 0 or min(counts) < 0:
            raise ValueError(f"StreamingScheduler: counts_per_ts must be >= 0 with a positive sum, "
                             f"got {counts}")
        if repeats < 1:
            raise ValueError(f"StreamingScheduler: repeats must be >= 1, got {repeats}")
        self.counts = counts
        self.repeats = int(repeats)
        self.quota = [c * self.repeats for c in counts]
        self.offsets = [sum(counts[:t]) for t in range(len(counts))]
        self._phase_starts = [sum(self.quota[:t]) for t in range(len(counts))]
        self.slots_per_epoch = sum(self.quota)
        self._next = 0
        self._frontier = self._skip_empty(0)       # lowest phase with incomplete slots
        self._done: dict[int, int] = {}            # phase -> completed slots
        self._cond: asyncio.Condition | None = None
        self.max_waiting = 0
        self._waiting = 0
        self.released = 0
        self._granted: dict[int, int] = {}
        self._client: dict[int, str] = {}
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        if self._log is not None and self._log.tell() == 0:
            self._log.write("seq,phase,ts_idx,index,client,granted_ns,released_ns\n")

    @property
    def frontier(self) -> int:
        """The lowest phase not yet complete: slots of this phase may run."""
        return self._frontier

    def _skip_empty(self, phase: int) -> int:
        n = len(self.counts)
        while self.quota[phase % n] == 0:
            phase += 1
        return phase

    def slot(self, seq: int) -> Slot:
        """The slot of the ``seq``-th arrival (pure function)."""
        epoch, within = divmod(seq, self.slots_per_epoch)
        t = 0
        while t + 1 < len(self.counts) and self._phase_starts[t + 1] <= within:
            t += 1
        j = within - self._phase_starts[t]
        return Slot(seq, epoch * len(self.counts) + t, t, self.offsets[t] + j % self.counts[t])

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def next_slot(self) -> Slot:
        """Assign the next slot without waiting (synchronous callers; pair with :meth:`ready`)."""
        s = self.slot(self._next)
        self._next += 1
        return s

    def next_slots(self, n: int) -> list[Slot]:
        """Assign ``n`` consecutive slots at once (one query's samples)."""
        return [self.next_slot() for _ in range(n)]

    def ready(self, slot: Slot) -> bool:
        return slot.phase <= self._frontier

    async def wait_ready(self, slot: Slot) -> None:
        """Wait until every phase before ``slot.phase`` has completed."""
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

    async def take(self, n: int, client: str = "") -> list[Slot]:
        """Assign ``n`` slots and wait for the phase of the first (one call for the common case
        of a query whose samples all fall in one timestamp); ``client`` goes to the order log."""
        slots = self.next_slots(n)
        if self._log is not None:
            for s in slots:
                self._client[s.seq] = client
        await self.wait_slots([s for s in slots if s.phase == slots[0].phase])
        return slots

    async def release_many(self, slots: Sequence[Slot]) -> None:
        """Release several slots (also on failure)."""
        for s in slots:
            await self.release(s)

    def stats(self) -> dict[str, int]:
        """Counters: slots assigned and released, current frontier phase, peak waiters."""
        return {"assigned": self._next, "released": self.released, "frontier": self._frontier,
                "max_waiting": self.max_waiting}

    def close(self) -> None:
        """Close the order log (if any)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    async def acquire(self) -> Slot:
        """Take the next slot and wait until every earlier phase has completed."""
        s = self.next_slot()
        await self.wait_ready(s)
        return s

    async def release(self, slot: Slot) -> None:
        """Mark a slot completed (also on failure); may open the next phase."""
        self.released += 1
        if self._log is not None:
            g = self._granted.pop(slot.seq, -1)
            who = self._client.pop(slot.seq, "")
            self._log.write(f"{slot.seq},{slot.phase},{slot.ts_idx},{slot.index},{who},{g},"
                            f"{time.monotonic_ns()}\n")
        self._done[slot.phase] = self._done.get(slot.phase, 0) + 1
        advanced = False
        n = len(self.counts)
        while self._done.get(self._frontier, 0) >= self.quota[self._frontier % n]:
            self._done.pop(self._frontier, None)
            self._frontier = self._skip_empty(self._frontier + 1)
            advanced = True
        if advanced and self._cond is not None:
            async with self._cond:
                self._cond.notify_all()
