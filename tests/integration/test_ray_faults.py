"""Faults on Ray: each run ends by its deadline, INVALID, with a reason naming the culprit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from raybench.testing import ray_run

pytestmark = pytest.mark.ray

BASE = ("scenario=Server", "sut.params.latency={dist: constant, ms: 2}", "settings.server_target_qps=100",
        "settings.server_target_latency_ns=100000000", "lateness_p99_ms=100")


def test_killed_shard_invalidates_and_survivors_are_kept(ray_local, tmp_path: Path) -> None:
    killed = []

    def kill_shard_1(ex, k, snap):
        # After the driver has received statistics at least once (every third poll, ~3 s).
        if not killed and snap.get("t_ns", 0) >= 4_500_000_000:
            ray_local.kill(ex.live_shards[1])
            killed.append(time.monotonic())

    t = time.monotonic()
    out, _ = ray_run(tmp_path, *BASE, "records=all", "settings.min_duration_ms=20000", "settings.max_duration_ms=30000",
                     progress=kill_shard_1, shards=3)
    elapsed = time.monotonic() - t
    m = out.metrics
    assert killed, "the shard was never killed"
    assert m.validity == "INVALID"
    assert any(r.startswith("shard 1 (") and "died" in r for r in m.invalid_reasons), m.invalid_reasons
    # What the dead shard had measured up to its last statistics is kept, not lost.
    assert any("kept its last progress snapshot" in r for r in m.invalid_reasons), m.invalid_reasons
    dead = next(s for s in m.shards if s["shard"] == 1)
    assert dead["status"] == "failed" and dead["samples_issued"] > 50 and dead["samples_completed"] > 50
    assert m.samples_issued > sum(s["samples_issued"] for s in m.shards if s["shard"] != 1)
    # The other shards were told to stop: the run ended long before its 20 s schedule.
    assert elapsed < 18
    rec = np.load(out.run_dir / "records.npz")
    assert rec["shard0/completed_ns"].shape[0] > 0 and rec["shard2/completed_ns"].shape[0] > 0
    assert "shard1/completed_ns" not in rec.files
    assert (out.run_dir / "mlperf_log_summary.txt").read_text().count("Result is : INVALID") == 1


def test_killed_replica_is_named_and_others_carry_on(ray_local, tmp_path: Path) -> None:
    killed = []

    def kill_replica_0(ex, k, snap):
        if not killed and snap.get("t_ns", 0) >= 1_000_000_000:
            ray_local.kill(ex.live_replicas[0])
            killed.append(1)

    out, _ = ray_run(tmp_path, *BASE, "settings.min_duration_ms=3000", "ray.replicas=2", progress=kill_replica_0)
    m = out.metrics
    assert killed
    assert m.validity == "INVALID"
    assert any("SUT replica 0 on" in e and "died" in e for e in m.errors), m.errors
    # Replica 1 kept serving after replica 0 died.
    assert m.samples_completed > 0.6 * m.samples_issued


def test_raising_sut_on_ray(ray_local, tmp_path: Path) -> None:
    out, _ = ray_run(tmp_path, *BASE, "settings.min_duration_ms=2000", "sut.params.raise_after=20")
    m = out.metrics
    assert m.validity == "INVALID"
    (reason,) = m.errors
    assert "RuntimeError: fake SUT failure injected after 20 queries" in reason and "replica 0 on" in reason
    assert m.samples_completed == 20


def test_unresponsive_sut_on_ray_ends_by_deadline(ray_local, tmp_path: Path) -> None:
    t = time.monotonic()
    out, _ = ray_run(tmp_path, *BASE, "settings.min_duration_ms=60000", "sut.params.hang_after=30", "query_timeout_s=2")
    assert time.monotonic() - t < 20
    m = out.metrics
    assert m.validity == "INVALID" and m.samples_completed == 30
    assert any("timeout: no response within 2s" in r for r in m.invalid_reasons)
