"""Clocks: the real monotonic clock, and a virtual one for tests.

All timestamps in raybench are integer nanoseconds read from one process's monotonic clock, so
a latency is always a difference of two readings on the same machine and clock skew between
nodes never enters it.

:class:`VirtualClock` drives an asyncio event loop on virtual time: whenever every task is
waiting on a timer, the loop jumps straight to the next timer instead of sleeping. A 10-minute
Server run with a fake SUT therefore takes milliseconds of real time and is fully deterministic.

Example:
    >>> clock = VirtualClock()
    >>> async def main():
    ...     await clock.sleep_until(5_000_000_000)
    ...     return clock.now_ns()
    >>> clock.run(main())
    5000000000
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from raybench.core.timerfd import timer_for

__all__ = ["MonotonicClock", "VirtualClock", "SPIN_NS", "EARLY_NS"]

T = TypeVar("T")

# Without a timerfd: below this distance to a deadline the clock stops trusting the event loop's
# timer (epoll waits in whole milliseconds) and yields in a tight loop instead.
SPIN_NS = 1_500_000
# With a timerfd: wake this long before the deadline and yield for the rest, which covers the
# kernel's wake-up latency while keeping the core idle between queries. ``RAYBENCH_SPIN_US``
# trades CPU for precision on nodes whose wake-ups are slow (see docs/USAGE.md).
EARLY_NS = int(float(os.environ.get("RAYBENCH_SPIN_US", "200")) * 1000)


class MonotonicClock:
    """``time.monotonic_ns`` with a precise ``sleep_until``.

    ``sleep_until`` waits on the loop's timerfd (:mod:`raybench.core.timerfd`) until
    ``EARLY_NS`` before the target, then yields to the loop (``asyncio.sleep(0)``) until the
    target passes, so the core idles between sends and other tasks still run near the deadline.
    Where timerfd is unavailable it sleeps on the loop timer until ``SPIN_NS`` before the target
    and yields from there. Precision is then limited by how long other callbacks hold the loop,
    which the loadgen reports as lateness.
    """

    __slots__ = ()

    #: ``time.monotonic_ns`` itself (no Python frame: it is read several times per query).
    now_ns = staticmethod(time.monotonic_ns)

    async def sleep_until(self, t_ns: int) -> None:
        delta = t_ns - time.monotonic_ns()
        if delta > EARLY_NS:
            timer = timer_for(asyncio.get_running_loop())
            if timer is not None:
                await timer.wait_until(t_ns - EARLY_NS)
            elif delta > SPIN_NS:
                await asyncio.sleep((delta - SPIN_NS) / 1e9)
        while time.monotonic_ns() < t_ns:
            await asyncio.sleep(0)

    async def nap_until(self, t_ns: int) -> None:
        """Sleep on the loop timer only (no spinning): for background tasks that need no precision."""
        delta = t_ns - time.monotonic_ns()
        if delta > 0:
            await asyncio.sleep(delta / 1e9)

    def __reduce__(self) -> tuple[Any, ...]:
        return (MonotonicClock, ())


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that advances virtual time instead of blocking."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            # Nothing scheduled and nothing ready: a real loop would block forever.
            raise RuntimeError("virtual-time loop is idle with no timer pending (deadlock)")
        if timeout > 0:
            self._clock._advance(int(round(timeout * 1e9)))
        return []


class VirtualClock:
    """A virtual nanosecond clock with its own event loop (tests and simulations only).

    Use :meth:`run` to execute a coroutine on a fresh loop whose ``time()`` is this clock.
    Timers fire at exactly their virtual deadlines; code that ``await``\\ s real I/O still works
    because ready file descriptors are polled before time is advanced.
    """

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self._now = int(start_ns)

    def now_ns(self) -> int:
        return self._now

    def _advance(self, delta_ns: int) -> None:
        self._now += max(0, delta_ns)

    async def sleep_until(self, t_ns: int) -> None:
        delta = t_ns - self._now
        if delta > 0:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            # Snap to the exact target: the loop's float timeout may round by a nanosecond.
            handle = loop.call_at(t_ns / 1e9, self._wake, fut, t_ns)
            try:
                await fut
            finally:
                handle.cancel()

    nap_until = sleep_until

    def _wake(self, fut: asyncio.Future[None], t_ns: int) -> None:
        if self._now < t_ns:
            self._now = t_ns
        if not fut.done():
            fut.set_result(None)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop running on this clock's virtual time."""
        loop = asyncio.SelectorEventLoop(_VirtualSelector(self))
        loop.time = lambda: self._now / 1e9  # type: ignore[method-assign]
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on a new virtual-time loop."""
        loop = self.new_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
