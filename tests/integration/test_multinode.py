"""Three simulated nodes (ray.cluster_utils.Cluster): placement and histogram merging."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raybench.testing import ray_run

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster3() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"loadgen": 1}, "include_dashboard": False,
                                                      "object_store_memory": 100 * 2**20})
    for _ in range(2):
        c.add_node(num_cpus=1, resources={"loadgen": 1}, object_store_memory=100 * 2**20)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    c.shutdown()


def test_shards_on_distinct_nodes_and_merged_histograms(cluster3, tmp_path: Path) -> None:
    from raybench.core.histogram import Histogram, merge_all

    out, ex = ray_run(tmp_path, "records=all", "scenario=Server", "sut.params.latency={dist: lognormal, median_ms: 3, sigma: 0.5}",
                      "settings.server_target_qps=150", "settings.min_duration_ms=4000", "lateness_p99_ms=100",
                      "ray.shard_resources={loadgen: 1}")
    m = out.metrics
    # Default: one shard per load node, each on its own node.
    assert len(m.shards) == 3
    nodes = {p["node_id"] for p in ex.placements}
    assert len(nodes) == 3
    assert len({s["node"] for s in m.shards}) == 3
    # The merged histogram equals the merge of the per-shard histograms, in any order.
    rec = np.load(out.run_dir / "records.npz")
    per_shard = []
    exact = []
    for k in range(3):
        r = {c: rec[f"shard{k}/{c}"] for c in ("completed_ns", "intended_ns", "issued_ns", "error", "first_token_ns", "n_tokens")}
        h = Histogram()
        ok = (r["error"] == 0) & (r["completed_ns"] > 0)
        lat = r["completed_ns"][ok] - r["intended_ns"][ok]
        h.record_many(lat)
        per_shard.append(h)
        exact.append(lat)
    merged = m.histograms["latency"]
    assert merged == merge_all(per_shard) == merge_all(per_shard[::-1])
    assert merged == functools.reduce(Histogram.merge, [per_shard[1], per_shard[2], per_shard[0]])
    allv = np.sort(np.concatenate(exact))
    for p in (0.5, 0.9, 0.95, 0.97, 0.99, 0.999):
        want = allv[int(allv.shape[0] * p)]
        assert abs(merged.percentile(p) - want) <= want * 0.001
