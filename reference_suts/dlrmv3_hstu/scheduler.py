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
"""

from __future__ import annotations

import asyncio
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
    """

    def __init__(self, counts_per_ts: Sequence[int], repeats: int = 1) -> None:
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

    async def acquire(self) -> Slot:
        """Take the next slot and wait until every earlier phase has completed."""
        s = self.next_slot()
        await self.wait_ready(s)
        return s

    async def release(self, slot: Slot) -> None:
        """Mark a slot completed (also on failure); may open the next phase."""
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
