"""Placement explains itself on a real 2-CPU Ray: what waits for what, a timeout, nothing left behind.

Leftovers are read from the GCS tables (``ray._private.state.actors()``, the table
``ray.util.state.list_actors`` reads through the dashboard, which this Ray does not run, and
``ray.util.placement_group_table()``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raybench.config import load_run_config
from raybench.ray.executor import RayExecutor
from raybench.ray.placement import ClusterError, PlacementError
from raybench.run import prepare_run

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray2() -> Iterator[Any]:
    """A private local Ray with exactly 2 CPUs and no GPU (the 2-core machine of the bug report)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _leftovers(ray: Any) -> tuple[list[str], list[str]]:
    """(actors not DEAD, placement groups not REMOVED), waiting briefly for kills to land."""
    end = time.monotonic() + 10
    while True:
        actors = [a["ActorClassName"] + ":" + a["State"] for a in ray._private.state.actors().values() if a["State"] != "DEAD"]
        pgs = [p["name"] + ":" + p["state"] for p in ray.util.placement_group_table().values() if p["state"] != "REMOVED"]
        if (not actors and not pgs) or time.monotonic() > end:
            return actors, pgs
        time.sleep(0.2)


def _start(tmp_path: Path, *sets: str) -> tuple[Any, RayExecutor, list[tuple[float, str]]]:
    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", f"out={tmp_path}",
                                 "settings.server_target_qps=50", "settings.min_duration_ms=1000",
                                 "ray.start_lead_s=1.0", *sets])
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    ex = RayExecutor(cfg.ray, on_status=lambda msg: lines.append((time.monotonic() - t0, msg)))
    prepared = prepare_run(cfg)
    return prepared, ex, lines


def test_more_shards_than_cpus_reports_then_times_out(ray2, tmp_path: Path) -> None:
    prepared, ex, lines = _start(tmp_path, "ray.shard_num_cpus=1", "ray.replica_num_cpus=0", "ray.placement_timeout_s=5")
    t = time.monotonic()
    with pytest.raises(PlacementError) as err:
        ex.run(prepared, prepared.jobs(3))
    took = time.monotonic() - t
    waiting = [(at, m) for at, m in lines if "waiting for {CPU: 1}" in m]
    assert waiting, lines
    at, first = waiting[0]
    assert at < 10, lines
    assert first.startswith("shard 2: waiting for {CPU: 1} on node "), first
    assert "(ray.shard_num_cpus); cluster has {CPU: 0} free of {CPU: 2}; this run asks for {CPU: 3} in all" in first
    msg = str(err.value)
    assert msg.startswith("ray.shard_num_cpus: not placed within ray.placement_timeout_s=5 s (1 still waiting): "
                          "shard 2: waiting for {CPU: 1}"), msg
    assert 5 <= took < 20, took
    assert _leftovers(ray2) == ([], [])


def test_waiting_placement_group_is_removed(ray2, tmp_path: Path) -> None:
    prepared, ex, lines = _start(tmp_path, "ray.replicas=3", "ray.replica_bundles=[{CPU: 1}]", "ray.replica_num_cpus=0",
                                 "ray.shard_num_cpus=0", "ray.placement_timeout_s=4")
    with pytest.raises(PlacementError) as err:
        ex.run(prepared, prepared.jobs(1))
    msg = str(err.value)
    assert msg.startswith("ray.replica_bundles: not placed within ray.placement_timeout_s=4 s (1 still waiting): "
                          "replica 2's placement group: waiting for {CPU: 1} (ray.replica_bundles)"), msg
    assert any(m.startswith("replica 2's placement group: waiting for {CPU: 1}") for _, m in lines), lines
    assert _leftovers(ray2) == ([], [])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("ray.replica_num_gpus=1", "ray.replica_num_gpus: no node has GPU >= 1 (nodes: 1, total GPU 0) for replica 0"),
        ("ray.replica_resources.foo=1", "ray.replica_resources.foo: no node has foo >= 1 (nodes: 1, total foo 0)"),
        ("ray.replica_num_cpus=3", "ray.replica_num_cpus: no node has CPU >= 3 (nodes: 1, total CPU 2)"),
        ("ray.replica_bundles=[{CPU: 2}, {CPU: 1}]", "ray.replica_bundles: replica 0's placement group needs {CPU: 3} on one node"),
        ("ray.replica_bundles=[{GPU: 1}]", "ray.replica_num_cpus: replica 0 asks for {CPU: 1} but runs inside bundle 0"),
        ("ray.shard_num_cpus=4", "ray.shard_num_cpus: shard 0 needs {CPU: 4} but its node "),
        ("ray.shard_resources.loadgen=1", "ray.shard_resources.loadgen: no node has loadgen >= 1 (nodes: 1, total loadgen 0)"),
        ("ray.shard_label=zone=a", "ray.shard_label: no alive node has label zone=a (nodes: 1; labels seen: none"),
    ],
)
def test_never_satisfiable_fails_before_any_actor(ray2, tmp_path: Path, setting: str, message: str) -> None:
    prepared, ex, _ = _start(tmp_path, setting)
    before = len(ray2._private.state.actors())
    t = time.monotonic()
    with pytest.raises(ClusterError) as err:
        ex.run(prepared, prepared.jobs(2))
    assert time.monotonic() - t < 5
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
    assert len(ray2._private.state.actors()) == before  # not even created
    assert _leftovers(ray2) == ([], [])


def test_placed_run_still_works(ray2, tmp_path: Path) -> None:
    """The watcher is transparent when everything fits: a normal run, no waiting lines."""
    prepared, ex, lines = _start(tmp_path, "ray.shard_num_cpus=0.5", "ray.replica_num_cpus=0.5")
    reports = ex.run(prepared, prepared.jobs(2))
    assert [r.status for r in reports] == ["ok", "ok"]
    assert not [m for _, m in lines if "waiting for" in m], lines
    assert _leftovers(ray2) == ([], [])
