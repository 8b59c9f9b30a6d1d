"""Shared fixtures: builders for runs on virtual time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAYBENCH_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "raybench"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def virtual_run(tmp_path: Path, *sets: str, **kw: Any):
    """Run a benchmark in-process on virtual time; returns the RunOutcome."""
    from raybench.core.clock import VirtualClock
    from raybench.core.config import load_run_config
    from raybench.core.runner import InProcessExecutor, run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", f"out={tmp_path}", *sets])
    return run_benchmark(cfg, InProcessExecutor(VirtualClock(), shards=kw.get("shards", 1)))


@pytest.fixture
def vrun(tmp_path: Path):
    def _run(*sets: str, **kw: Any):
        return virtual_run(tmp_path, *sets, **kw)

    return _run
