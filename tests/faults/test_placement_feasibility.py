"""Requests no node could ever hold are refused before any actor exists, naming field and resource.

Pure: the checks read node dicts shaped like ``ray.nodes()``; no Ray is started.
"""

from __future__ import annotations

import pytest

from raybench.config import RayConfig
from raybench.ray.placement import (
    PlacementError,
    Request,
    check_bundle_holds_actor,
    check_feasible,
    fmt_resources,
    request_fields,
)


def node(node_id: str, ip: str, labels: dict[str, str] | None = None, **res: float) -> dict:
    return {"NodeID": node_id, "NodeManagerAddress": ip, "Alive": True, "Labels": labels or {},
            "Resources": {"memory": 8e9, "object_store_memory": 1e9, f"node:{ip}": 1.0, **res}}


CPU_ONLY = [node("a" * 56, "10.0.0.1", CPU=2)]
TWO = [node("a" * 56, "10.0.0.1", CPU=8, foo=1), node("b" * 56, "10.0.0.2", CPU=4, GPU=2)]


def replica(**demand: float) -> Request:
    return Request(who="replica 0", kind="replica", demand=demand, fields=request_fields("replica"))


def shard(k: int = 0, node_id: str | None = None, **demand: float) -> Request:
    return Request(who=f"shard {k}", kind="shard", demand=demand, fields=request_fields("shard"), node_id=node_id,
                   node_why=" (ray.placement=spread pins each shard to one of 1 load node)")


@pytest.mark.parametrize(
    ("req", "nodes", "message"),
    [
        (replica(CPU=1, GPU=1), CPU_ONLY, "ray.replica_num_gpus: no node has GPU >= 1 (nodes: 1, total GPU 0) for replica 0"),
        (replica(CPU=1, foo=1), CPU_ONLY, "ray.replica_resources.foo: no node has foo >= 1 (nodes: 1, total foo 0) for replica 0"),
        (replica(CPU=3), CPU_ONLY, "ray.replica_num_cpus: no node has CPU >= 3 (nodes: 1, total CPU 2) for replica 0"),
        (replica(CPU=16), TWO, "ray.replica_num_cpus: no node has CPU >= 16 (nodes: 2, total CPU 12, largest 8) for replica 0"),
        # Each resource exists somewhere, never together: the combination is named.
        (replica(GPU=1, foo=1), TWO, "ray.replica_num_gpus/ray.replica_resources.foo: no node has {GPU: 1, foo: 1} at once "
                                     "for replica 0 (nodes: 2: {GPU: 0, foo: 1}, {GPU: 2, foo: 0})"),
        (shard(CPU=1, loadgen=2), CPU_ONLY, "ray.shard_resources.loadgen: no node has loadgen >= 2 (nodes: 1, total loadgen 0) for shard 0"),
        (shard(0, "a" * 56, CPU=3), CPU_ONLY, "ray.shard_num_cpus: shard 0 needs {CPU: 3} but its node 10.0.0.1 (aaaaaaaa) has "
                                              "{CPU: 2} in total (ray.placement=spread pins each shard to one of 1 load node)"),
        (Request(who="replica 0's placement group", kind="bundles", demand={}, fields=request_fields("bundles"),
                 bundles=[{"CPU": 1}, {"CPU": 2}]), CPU_ONLY,
         "ray.replica_bundles: replica 0's placement group needs {CPU: 3} on one node (STRICT_PACK of {CPU: 1}, {CPU: 2}); "
         "no node has that (nodes: 1: {CPU: 2})"),
    ],
)
def test_never_satisfiable_is_named(req: Request, nodes: list[dict], message: str) -> None:
    with pytest.raises(PlacementError) as err:
        check_feasible([req], nodes)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_fits_somewhere_or_waits_is_not_refused() -> None:
    # Three 1-CPU shards on one 2-CPU node cannot run at once, but each fits: the watcher's case.
    check_feasible([shard(k, CPU=1) for k in range(3)], CPU_ONLY)
    check_feasible([replica(CPU=1, GPU=2), shard(CPU=8, foo=1)], TWO)
    check_feasible([shard(CPU=0)], [])  # asks for nothing: nothing to check


def test_replica_must_fit_its_bundle() -> None:
    with pytest.raises(PlacementError) as err:
        check_bundle_holds_actor(replica(CPU=1), [{"GPU": 1}])
    assert str(err.value) == ("ray.replica_num_cpus: replica 0 asks for {CPU: 1} but runs inside bundle 0 of "
                              "ray.replica_bundles, {GPU: 1}, which cannot hold it (add CPU to that bundle or lower "
                              "ray.replica_num_cpus)")
    check_bundle_holds_actor(replica(CPU=1, GPU=1), [{"CPU": 2, "GPU": 1}, {"CPU": 4}])


def test_resources_are_printed_plainly() -> None:
    assert fmt_resources({"CPU": 2.0, "GPU": 0.5, "memory": 1e9, "node:10.0.0.1": 1.0}) == "{CPU: 2, GPU: 0.5}"
    assert fmt_resources({"CPU": 0.0}, ["CPU", "GPU"]) == "{CPU: 0, GPU: 0}"


def test_placement_timeout_is_a_ray_config_field() -> None:
    assert RayConfig().placement_timeout_s == 120.0
    assert RayConfig(placement_timeout_s=5).placement_timeout_s == 5.0
    with pytest.raises(ValueError):
        RayConfig(placement_timeout_s=0)
