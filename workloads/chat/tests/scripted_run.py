"""Run a whole benchmark against the scripted OpenAI server, on virtual time, in one event loop.

The server's scripted delays are virtual timers and loopback I/O is ready at once, so every TTFT,
TPOT and latency of the run is exactly the scripted number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")  # the scripted server (reference_suts/openai_endpoint/tests)

from raybench.config import load_run_config  # noqa: E402
from raybench.core.clock import VirtualClock  # noqa: E402
from raybench.core.loadgen import ShardRunner  # noqa: E402
from raybench.inprocess import SharedLibrary  # noqa: E402
from raybench.registry import make_sut  # noqa: E402
from raybench.run import RunOutcome, execute_run, prepare_run  # noqa: E402
from reference_suts.openai_endpoint.tests.scripted_server import Script, ScriptedServer  # noqa: E402

__all__ = ["Script", "ScriptedExecutor", "run_scripted"]


class ScriptedExecutor:
    """An in-process executor that starts a :class:`ScriptedServer` in the run's loop and points
    the SUT at it (the config's URL is a placeholder)."""

    def __init__(self, scripts: dict[str, Script], default: str | None = None) -> None:
        self.scripts, self.default = scripts, default
        self.clock = VirtualClock()
        self.requests: list[dict[str, Any]] = []

    def default_shards(self, prepared: Any) -> int:
        return 1

    def run(self, prepared: Any, jobs: list[Any], progress: Any = None) -> list[Any]:
        clock = self.clock
        library = SharedLibrary(prepared.library)

        async def main() -> list[Any]:
            async with ScriptedServer(self.scripts, self.default) as srv:
                self.requests = srv.requests
                runners = [ShardRunner(job.slice, make_sut(job.sut, {**job.sut_params, "urls": [srv.url]}), library,
                                       clock, **job.runner_options()) for job in jobs]
                try:
                    await asyncio.gather(*(r.prepare() for r in runners))
                    t0 = clock.now_ns() + 20_000_000
                    return list(await asyncio.gather(*(r.run(t0) for r in runners)))
                finally:
                    await asyncio.gather(*(r.close() for r in runners), return_exceptions=True)

        return clock.run(main())


def run_scripted(tmp_path: Path, rows_file: Path, scripts: dict[str, Script], overrides: list[str],
                 default: str | None = None) -> tuple[RunOutcome, ScriptedExecutor]:
    """One chat run over ``rows_file`` against the scripted server (``overrides``: ``--set`` items)."""
    cfg = load_run_config(None, [
        "workload=chat", f"workload.params.path={rows_file}", "sut=openai_endpoint",
        "sut.params.urls=[http://127.0.0.1:9]", "sut.params.connections=1", "executor=inprocess",
        f"run_dir={tmp_path / 'run'}", "report=false", "mlperf_conf=none", *overrides,
    ])
    ex = ScriptedExecutor(scripts, default)
    return execute_run(prepare_run(cfg), ex), ex
