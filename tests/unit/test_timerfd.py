"""The timerfd behind MonotonicClock.sleep_until: never early, in deadline order, cancellable."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from raybench.core import clock as clock_mod
from raybench.core.clock import MonotonicClock
from raybench.core.timerfd import timer_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux-only")


def test_wakeups_never_early_and_in_deadline_order() -> None:
    async def main() -> tuple[list[int], list[int]]:
        timer = timer_for(asyncio.get_running_loop())
        assert timer is not None
        assert timer_for(asyncio.get_running_loop()) is timer  # one per loop
        base = time.monotonic_ns() + 2_000_000
        offsets = [900_000, 300_000, 1_200_000, 300_000, 0, 600_000]  # pushed out of order
        woke: list[int] = []
        order: list[int] = []

        async def one(k: int, off: int) -> None:
            await timer.wait_until(base + off)
            woke.append(time.monotonic_ns() - (base + off))
            order.append(k)

        await asyncio.gather(*(one(k, off) for k, off in enumerate(offsets)))
        return woke, order

    woke, order = asyncio.run(main())
    assert min(woke) >= 0
    # deadlines 0, 300k (twice: first pushed first), 600k, 900k, 1.2M
    assert order == [4, 1, 3, 5, 0, 2]


def test_cancelled_sleeper_does_not_block_the_next() -> None:
    async def main() -> int:
        timer = timer_for(asyncio.get_running_loop())
        assert timer is not None
        t = time.monotonic_ns()
        doomed = asyncio.ensure_future(timer.wait_until(t + 1_000_000))
        await asyncio.sleep(0)
        doomed.cancel()
        await timer.wait_until(t + 3_000_000)
        return time.monotonic_ns() - (t + 3_000_000)

    assert asyncio.run(main()) >= 0


def test_sleep_until_is_exact_or_late_and_falls_back_without_timerfd(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = MonotonicClock()

    async def main() -> list[int]:
        late = []
        t = clock.now_ns()
        for gap in (50_000, 400_000, 2_500_000, 10_000):
            t += gap
            await clock.sleep_until(t)
            late.append(clock.now_ns() - t)
        return late

    assert min(asyncio.run(main())) >= 0
    monkeypatch.setattr(clock_mod, "timer_for", lambda loop: None)
    assert min(asyncio.run(main())) >= 0


def test_uvloop_loop_gets_a_timer() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> int:
        timer = timer_for(asyncio.get_running_loop())
        assert timer is not None
        t = time.monotonic_ns() + 500_000
        await timer.wait_until(t)
        return time.monotonic_ns() - t

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) >= 0
    finally:
        loop.close()
