"""The Ray executor gives the same verdicts as the in-process one; shards, replicas, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raybench.testing import ray_run, virtual_run

pytestmark = pytest.mark.ray

SERVER_OK = ("scenario=Server", "sut.params.latency={dist: constant, ms: 3}", "settings.server_target_qps=150",
             "settings.min_duration_ms=4000", "settings.server_target_latency_ns=100000000")
SERVER_BAD = ("scenario=Server", "sut.params.latency={dist: constant, ms: 3}", "settings.server_target_qps=150",
              "settings.min_duration_ms=4000", "settings.server_target_latency_ns=2000000")


@pytest.mark.parametrize("shards", [1, 3])
def test_same_verdict_in_process_and_on_ray(ray_local, tmp_path: Path, shards: int) -> None:
    ok_local = virtual_run(tmp_path / "local_ok", *SERVER_OK).metrics
    bad_local = virtual_run(tmp_path / "local_bad", *SERVER_BAD).metrics
    ok_ray, _ = ray_run(tmp_path / "ray_ok", *SERVER_OK, "lateness_p99_ms=50", shards=shards)
    bad_ray, _ = ray_run(tmp_path / "ray_bad", *SERVER_BAD, "lateness_p99_ms=50", shards=shards)
    assert ok_local.validity == "VALID" and ok_ray.metrics.validity == "VALID", ok_ray.metrics.invalid_reasons
    assert bad_local.validity == "INVALID" and bad_ray.metrics.validity == "INVALID"
    assert any(r.startswith("latency constraint not met") for r in bad_ray.metrics.invalid_reasons)
    # The same global schedule: same number of queries, split over the shards.
    assert ok_ray.metrics.queries_issued == ok_local.queries_issued
    per = [s["queries_issued"] for s in ok_ray.metrics.shards]
    assert len(per) == shards and sum(per) == ok_local.queries_issued
    assert max(per) - min(per) <= 1
    res = json.loads((ok_ray.run_dir / "result.json").read_text())
    assert res["shards"] == shards


def test_replicas_share_load_and_streaming_tokens_cross_actors(ray_local, tmp_path: Path) -> None:
    out, ex = ray_run(tmp_path, "scenario=Server", "sut.params.tokens={n: 8, ttft_ms: 30, tpot_ms: 10}",
                      "sut.params.streaming=true", "settings.server_target_qps=40", "settings.min_duration_ms=3000",
                      "settings.use_token_latencies=true", "settings.server_ttft_latency=1000000000",
                      "settings.server_tpot_latency=1000000000", "ray.replicas=2", "lateness_p99_ms=50")
    m = out.metrics
    assert m.num_errors == 0 and m.samples_completed == m.samples_issued
    # TTFT measured on the shard's clock through the streaming generator: >= the SUT's 30 ms.
    assert 30_000_000 <= m.ttft["p50"] < 60_000_000
    assert 9_000_000 <= m.tpot["p50"] < 20_000_000
    assert m.total_tokens == 8 * m.samples_completed


def test_offline_splits_samples_over_shards(ray_local, tmp_path: Path) -> None:
    out, _ = ray_run(tmp_path, "scenario=Offline", "sut.params.latency={dist: constant, ms: 2}", "records=all",
                     "settings.offline_expected_qps=2000", "settings.min_duration_ms=500", shards=2)
    m = out.metrics
    assert m.samples_completed == 1100
    assert sorted(s["samples_issued"] for s in m.shards) == [550, 550]
    rec = np.load(out.run_dir / "records.npz")
    assert rec["shard0/sample_index"].shape[0] + rec["shard1/sample_index"].shape[0] == 1100


def test_ray_transport_actor_calls_and_streaming_generator(ray_local, tmp_path: Path) -> None:
    # The plain Ray path (actor calls; tokens through a streaming generator), used across nodes
    # unless the direct channel is asked for.
    out, _ = ray_run(tmp_path, "scenario=Server", "sut.params.tokens={n: 4, ttft_ms: 30, tpot_ms: 10}",
                     "settings.server_target_qps=10", "settings.min_duration_ms=2000", "settings.use_token_latencies=true",
                     "settings.server_ttft_latency=1000000000", "settings.server_tpot_latency=1000000000",
                     "ray.transport=ray", "lateness_p99_ms=100")
    m = out.metrics
    assert m.num_errors == 0 and m.samples_completed == m.samples_issued
    assert 30_000_000 <= m.ttft["min"] and m.ttft["p50"] < 500_000_000
    assert m.total_tokens == 4 * m.samples_completed


def test_replicas_in_placement_groups(ray_local, tmp_path: Path) -> None:
    # Multi-GPU replicas use one placement group each (bundles); here CPU bundles stand in for GPUs.
    out, ex = ray_run(tmp_path, "scenario=Offline", "sut.params.latency={dist: constant, ms: 2}", "ray.replicas=2",
                      "ray.replica_bundles=[{CPU: 1}, {CPU: 0.5}]", "settings.offline_expected_qps=1000",
                      "settings.min_duration_ms=300")
    assert out.metrics.samples_completed == 330 and out.metrics.num_errors == 0
    assert ray_local.util.placement_group_table() and all(
        pg["state"] == "REMOVED" for pg in ray_local.util.placement_group_table().values())
