"""Ray fixtures: one local Ray per module (Ray's ``ray_start_regular_shared`` shape)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def ray_run(tmp_path: Path, *sets: str, progress=None, executor_hook=None, shards: int | None = None):
    """Run on the already-initialised Ray; returns (outcome, executor)."""
    from raybench.core.config import load_run_config
    from raybench.core.runner import run_benchmark
    from raybench.ray.executor import RayExecutor

    base = ["workload=synthetic", "sut=fake", f"out={tmp_path}", "ray.shard_num_cpus=0", "ray.replica_num_cpus=0",
            "ray.start_lead_s=1.0"]
    if shards is not None:
        base.append(f"shards={shards}")
    cfg = load_run_config(None, [*base, *sets])
    ex = RayExecutor(cfg.ray)
    cb = None
    if progress is not None:
        def cb(k, snap):
            progress(ex, k, snap)
    out = run_benchmark(cfg, ex, cb)
    return out, ex
