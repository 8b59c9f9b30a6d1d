"""No hang, ever: every run ends by its deadline, on virtual time where it can be."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from raybench.core.clock import VirtualClock
from raybench.core.conf import load_settings
from raybench.core.loadgen import ShardRunner
from raybench.core.plan import build_plan, partition
from raybench.core.protocols import Response, SUTContext
from raybench.core.scenarios import Server
from raybench.testing import virtual_run


class EchoSUT:
    name, max_batch, max_inflight = "echo", 1, 0

    async def start(self, ctx):
        return None

    async def issue(self, q):
        await asyncio.sleep(0.001)
        return [Response(data=b"x") for _ in q.indices]

    async def stop(self):
        return None


class Library:
    name, total_count, performance_count = "lib", 8, 8

    def load(self, indices):
        return None

    def unload(self, indices):
        return None

    def get(self, i):
        return i


def _runner(clock: VirtualClock, qps: float = 100.0) -> ShardRunner:
    s = load_settings(model=None, scenario="Server", mlperf_conf="none",
                      overrides={"server_target_qps": qps, "min_duration_ms": 1000, "min_query_count": 1})
    (sl,) = partition(build_plan(Server(), s, 8, 8), 1)
    return ShardRunner(sl, EchoSUT(), Library(), clock, ctx=SUTContext("w", "Server", "PerformanceOnly"))


def test_query_cancelled_before_it_ran_is_recorded_and_released() -> None:
    clock = VirtualClock()

    async def main():
        r = _runner(clock)
        await r.prepare()
        r.t0 = clock.now_ns()
        r.spawn(0, r.slice.phases[0], 0, 0)  # the task exists but has never run...
        r.abort("stopped before it ran")     # ...and is cancelled now
        await asyncio.wait_for(r._drain(), timeout=1.0)  # drains at once instead of waiting forever
        return r.current_stats()

    st = clock.run(main())
    assert (st.samples_issued, st.samples_failed, st.samples_ok) == (1, 1, 0)
    assert dict(st.errors) == {"stopped before it ran": 1}


def test_abort_wakes_a_server_loop_sleeping_until_its_next_send() -> None:
    clock = VirtualClock()

    async def main():
        r = _runner(clock, qps=0.001)  # ~1000 s between sends
        await r.prepare()
        t0 = clock.now_ns() + 1_000_000
        run = asyncio.ensure_future(r.run(t0))
        await clock.sleep_until(t0 + 5_000_000_000)
        r.abort("interrupted by the user (Ctrl-C)")
        rep = await run
        return rep, clock.now_ns() - t0

    rep, ended = clock.run(main())
    assert rep.status == "aborted" and rep.failure == "interrupted by the user (Ctrl-C)"
    assert ended == 5_000_000_000  # not the ~1000 s of the next scheduled send
    assert rep.stats.samples_issued == 1  # the query at T0 was sent and answered
    assert rep.stats.samples_ok == 1


def test_unresponsive_sut_run_ends_by_the_query_timeout(tmp_path: Path) -> None:
    out = virtual_run(tmp_path, "scenario=Server", "sut.params.hang_after=5", "settings.server_target_qps=100",
                      "settings.min_duration_ms=2000", "query_timeout_s=3")
    m = out.metrics
    assert m.validity == "INVALID"
    assert any("SUT unresponsive (timeout: no response within 3s)" in r for r in m.invalid_reasons)
    assert m.samples_issued > 5 and m.samples_completed == 5
    assert np.isclose(m.duration_ns / 1e9, 3.0 + 0.05, atol=0.3)
