"""Fixtures shared by every test folder (tests/, workloads/*/tests, reference_suts/*/tests).

A root conftest (not tests/conftest.py) so that a bare ``pytest`` and ``python -m pytest`` see the
same fixtures from any folder; the helpers they wrap live in :mod:`raybench.testing`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAYBENCH_CACHE", str(Path(__file__).resolve().parent / ".cache" / "raybench"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture
def vrun(tmp_path: Path):
    """``vrun(*sets, shards=1)``: a synthetic/fake run on virtual time (see ``raybench.testing``)."""
    from raybench.testing import virtual_run

    def _run(*sets: str, **kw: Any):
        return virtual_run(tmp_path, *sets, **kw)

    return _run


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """One local Ray per test module (Ray's ``ray_start_regular_shared`` shape)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
