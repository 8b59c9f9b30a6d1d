"""``InProcessExecutor``: every shard as an asyncio task in this process (tests, debugging).

It still pickles every job and report it passes, as a real cluster would, so serialization bugs
show up in unit tests. With a :class:`~raybench.core.clock.VirtualClock` the whole benchmark runs
on virtual time. The shards share the driver's sample library (one per process) through a
reference-counting adapter, so one shard unloading a sample never pulls it from under another.
"""

from __future__ import annotations

import asyncio
import pickle
import signal
from collections.abc import Sequence
from typing import Any

from raybench.core.clock import MonotonicClock, VirtualClock
from raybench.core.loadgen import ShardRunner
from raybench.core.protocols import SampleLibrary
from raybench.core.records import ShardReport
from raybench.run import PreparedRun, ProgressFn, ShardJob
from raybench.signals import Interrupted, interrupt_reason

__all__ = ["InProcessExecutor", "SharedLibrary"]


class SharedLibrary:
    """A sample library shared by several shards of one process: load/unload are reference counted."""

    def __init__(self, inner: SampleLibrary) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "qsl")
        self._refs: dict[int, int] = {}

    @property
    def total_count(self) -> int:
        return int(self.inner.total_count)

    @property
    def performance_count(self) -> int:
        return int(self.inner.performance_count)

    def __getattr__(self, name: str) -> Any:
        """The inner library's optional hooks (``input_tokens``, ``conversations``, ``turn_payload``...)."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def load(self, indices: Sequence[int]) -> None:
        new = [i for i in indices if self._refs.get(i, 0) == 0]
        for i in indices:
            self._refs[i] = self._refs.get(i, 0) + 1
        if new:
            self.inner.load(new)

    def unload(self, indices: Sequence[int]) -> None:
        gone = []
        for i in indices:
            n = self._refs.get(i, 0) - 1
            if n <= 0:
                self._refs.pop(i, None)
                gone.append(i)
            else:
                self._refs[i] = n
        if gone:
            self.inner.unload(gone)

    def get(self, index: int) -> Any:
        return self.inner.get(index)


class InProcessExecutor:
    """Runs every shard as an asyncio task in this process.

    Args:
        clock: ``None`` for the real monotonic clock, or a :class:`VirtualClock` to run the whole
            benchmark on virtual time.
        shards: default shard count.
    """

    def __init__(self, clock: VirtualClock | None = None, shards: int = 1) -> None:
        self.clock = clock
        self.shards = shards

    def default_shards(self, prepared: PreparedRun) -> int:
        return self.shards

    def run(self, prepared: PreparedRun, jobs: list[ShardJob], progress: ProgressFn | None = None) -> list[ShardReport]:
        from raybench.registry import make_sut

        jobs = pickle.loads(pickle.dumps(jobs))  # what crosses the executor boundary, as on a cluster
        clock = self.clock or MonotonicClock()
        library = SharedLibrary(prepared.library)

        async def main() -> list[ShardReport]:
            runners = []
            for job in jobs:
                cb = (lambda snap, k=job.slice.shard: progress(k, snap)) if progress else None
                runners.append(ShardRunner(job.slice, make_sut(job.sut, dict(job.sut_params)), library, clock,
                                           on_snapshot=cb, **job.runner_options()))
            loop = asyncio.get_running_loop()
            _install_interrupt(loop, runners)
            try:
                await asyncio.gather(*(r.prepare() for r in runners))
                t0 = clock.now_ns() + 20_000_000
                return list(await asyncio.gather(*(r.run(t0) for r in runners)))
            finally:
                await asyncio.gather(*(r.close() for r in runners), return_exceptions=True)
                _remove_interrupt(loop)

        reports = clock.run(main()) if isinstance(clock, VirtualClock) else asyncio.run(main())
        return pickle.loads(pickle.dumps(reports))


def _install_interrupt(loop: asyncio.AbstractEventLoop, runners: list[ShardRunner]) -> None:
    """Ctrl-C or SIGTERM stops issuing, cancels what is in flight and lets the run write what it has."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        reason = interrupt_reason(Interrupted(signum))
        try:
            loop.add_signal_handler(signum, lambda why=reason: [r.abort(why) for r in runners])
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass


def _remove_interrupt(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.remove_signal_handler(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
