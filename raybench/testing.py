"""Builders for tests and examples: a run on virtual time, a run on an already-started Ray.

They live in the package (not in ``tests/``) so that any test file, whatever directory pytest
collects it from and however pytest is started (``pytest`` or ``python -m pytest``), can import
them. The fixtures that wrap them (``vrun``, ``ray_local``) are in the root ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RAY_TEST_SETS", "ray_run", "virtual_run"]

#: Config overrides every Ray test run uses: zero-CPU actors (2-core CI machines) and a short lead.
RAY_TEST_SETS = ("ray.shard_num_cpus=0", "ray.replica_num_cpus=0", "ray.start_lead_s=1.0")


def virtual_run(tmp_path: Path, *sets: str, shards: int = 1) -> Any:
    """Run the synthetic workload against the fake SUT in-process on virtual time.

    Returns the ``RunOutcome``; ``sets`` are ``--set`` style overrides applied last.
    """
    from raybench.config import load_run_config
    from raybench.core.clock import VirtualClock
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", f"out={tmp_path}", *sets])
    return run_benchmark(cfg, InProcessExecutor(VirtualClock(), shards=shards))


def ray_run(
    tmp_path: Path,
    *sets: str,
    progress: Callable[[Any, int, dict[str, Any]], None] | None = None,
    shards: int | None = None,
) -> tuple[Any, Any]:
    """Run on the already-initialised Ray (the ``ray_local`` fixture); returns (outcome, executor)."""
    from raybench.config import load_run_config
    from raybench.ray.executor import RayExecutor
    from raybench.run import run_benchmark

    base = ["workload=synthetic", "sut=fake", f"out={tmp_path}", *RAY_TEST_SETS]
    if shards is not None:
        base.append(f"shards={shards}")
    cfg = load_run_config(None, [*base, *sets])
    ex = RayExecutor(cfg.ray)
    cb = None
    if progress is not None:

        def cb(k: int, snap: dict[str, Any]) -> None:
            progress(ex, k, snap)

    return run_benchmark(cfg, ex, cb), ex
