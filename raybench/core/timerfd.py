"""Precise wake-ups for an asyncio loop without busy waiting: one Linux ``timerfd`` per loop.

An event loop's own timers wake through ``epoll_wait``'s timeout, which is whole milliseconds
(and carries the thread's timer slack), so a query scheduled 0.3 ms from now would be sent up to
a millisecond late. The old remedy, spinning on ``asyncio.sleep(0)`` for the last 1.5 ms before
every send, keeps a core 100% busy at 1000 QPS; on a node where the shard shares cores with the
SUT's replicas that spin is what delays the replicas' answers.

A ``timerfd`` on ``CLOCK_MONOTONIC`` (the clock behind ``time.monotonic_ns``) armed with an
absolute expiry fires on a high-resolution kernel timer with no slack, and its fd wakes
``epoll`` at once. :class:`PreciseTimer` keeps the pending deadlines of one loop in a heap,
arms the fd to the earliest, and resolves every due future when it fires.

``timer_for(loop)`` returns ``None`` where timerfd is unavailable (not Linux, no libc through
ctypes); callers then fall back to the loop timer plus a spin.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import os
import sys
import time
import weakref
from typing import Any

__all__ = ["PreciseTimer", "timer_for"]

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
_TIMERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PreciseTimer | None] = weakref.WeakKeyDictionary()


class PreciseTimer:
    """Deadlines on one event loop, served by one timerfd (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._loop = loop
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._armed = 0  # the deadline the fd is armed for (0: disarmed)
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        loop.add_reader(fd, self._fire)
        weakref.finalize(self, _close, loop, fd)

    def wait_until(self, t_ns: int) -> asyncio.Future[None]:
        """A future resolved on the loop once ``time.monotonic_ns() >= t_ns`` (give or take the
        kernel's wake-up latency, tens of microseconds)."""
        fut = self._loop.create_future()
        heapq.heappush(self._heap, (t_ns, next(self._seq), fut))
        if self._armed == 0 or t_ns < self._armed:
            self._arm(t_ns)
        return fut

    def _arm(self, t_ns: int) -> None:
        v = self._spec.it_value
        v.tv_sec, v.tv_nsec = divmod(max(t_ns, 1), 1_000_000_000)
        if _LIBC.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed = t_ns

    def _fire(self) -> None:
        try:
            os.read(self.fd, 8)
        except (BlockingIOError, InterruptedError):
            pass
        self._armed = 0
        heap = self._heap
        now = time.monotonic_ns()
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
        while heap and heap[0][2].done():  # cancelled sleepers
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])


def _close(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    try:
        if not loop.is_closed():
            loop.remove_reader(fd)
    except Exception:  # noqa: BLE001 - a finalizer must not raise
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def timer_for(loop: asyncio.AbstractEventLoop) -> PreciseTimer | None:
    """The loop's timer, created on first use; ``None`` where timerfd cannot be used."""
    try:
        return _TIMERS[loop]
    except KeyError:
        pass
    except TypeError:  # a loop that cannot be weakly referenced
        return None
    timer: PreciseTimer | None = None
    if _LIBC is not None:
        try:
            timer = PreciseTimer(loop)
        except (OSError, NotImplementedError, RuntimeError):
            timer = None
    _TIMERS[loop] = timer
    return timer
