"""Ray scaling: shard capacity, actor-SUT overhead, lateness vs QPS, histogram merge cost.

All baselines are measured in the same run:

1. Null-SUT issue capacity (Server far above capacity, SUT inline in each shard): 1 vs 2 shards.
2. Per-query overhead of a SUT replica actor vs the same SUT inline in the shard (fake SUT with
   a constant 5 ms latency at 1k QPS): added p50 latency in microseconds.
3. Server send lateness p99 on one Ray shard at increasing QPS, until the harness falls behind.
4. Merging 64 shard histograms: time, and percentiles vs the exact ones.

Usage:
    python benchmarks/ray_scaling.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np


def _run(sets: list[str]) -> Any:
    from raybench.config import load_run_config
    from raybench.ray.executor import RayExecutor
    from raybench.run import run_benchmark

    with tempfile.TemporaryDirectory() as d:
        cfg = load_run_config(None, ["workload=synthetic", f"out={d}", "report=false", "ray.start_lead_s=1", *sets])
        return run_benchmark(cfg, RayExecutor(cfg.ray)).metrics


def capacity(shards: int, samples: int) -> float:
    """Samples/s the shards issue when every sample is its own SUT call (Offline, null SUT inline)."""
    m = _run(["sut=null", "scenario=Offline", f"shards={shards}", "ray.sut_inline=true", "sut.params.max_batch=1",
              "sut.params.max_inflight=256", f"settings.offline_expected_qps={samples}", "settings.min_duration_ms=1000",
              "ray.shard_num_cpus=1"])
    return m.samples_per_second


def actor_overhead(seconds: float, transport: str, sut: str = "null") -> tuple[int, int]:
    """p50 latency of the same SUT inline in the shard vs in a replica actor, at 1k QPS.

    The null SUT isolates the harness's own cost. (A SUT that sleeps measures its host loop's
    timer precision too: a shard's loop spins near its send times and wakes timers within tens
    of microseconds, an idle replica's loop sleeps in epoll with millisecond granularity.)
    """
    base = [f"sut={sut}", "scenario=Server", "settings.server_target_qps=1000",
            f"settings.min_duration_ms={int(seconds * 1000)}", "ray.shard_num_cpus=0.5", "ray.replica_num_cpus=0.5",
            "lateness_p99_ms=1000", f"ray.transport={transport}"]
    if sut == "fake":
        base.append("sut.params.latency={dist: constant, ms: 5}")
    inline = _run([*base, "ray.sut_inline=true"]).latency["p50"]
    actor = _run([*base, "ray.sut_inline=false"]).latency["p50"]
    return inline, actor


def lateness_curve(seconds: float, qps_list: list[float]) -> list[tuple[float, str, float, float]]:
    rows = []
    for q in qps_list:
        m = _run(["sut=null", "scenario=Server", "ray.sut_inline=true", f"settings.server_target_qps={q}",
                  f"settings.min_duration_ms={int(seconds * 1000)}", "settings.server_target_latency_ns=10000000"])
        rows.append((q, m.validity, m.samples_per_second, m.lateness["p99"] / 1e6))
        if m.validity != "VALID":
            break
    return rows


def merge_cost() -> tuple[float, float]:
    from raybench.core.histogram import Histogram, merge_all

    rng = np.random.default_rng(0)
    parts = [np.exp(rng.normal(np.log(5e6), 0.8, 20_000)).astype(np.int64) for _ in range(64)]
    hists = []
    for p in parts:
        h = Histogram()
        h.record_many(p)
        hists.append(Histogram.from_dict(h.to_dict()))  # as received from shards
    t = time.perf_counter()
    merged = merge_all(hists)
    dt = time.perf_counter() - t
    allv = np.sort(np.concatenate(parts))
    worst = max(abs(merged.percentile(p) - allv[int(allv.shape[0] * p)]) / allv[int(allv.shape[0] * p)]
                for p in (0.5, 0.9, 0.95, 0.97, 0.99, 0.999))
    return dt, worst


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--qps", default="1000,5000,10000,20000,40000,60000")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    print(f"# ray scaling, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    try:
        c1 = capacity(1, 300_000)
        c2 = capacity(2, 300_000)
        print(f"null-SUT issue capacity: 1 shard {c1:,.0f}/s, 2 shards {c2:,.0f}/s -> {c2 / c1:.2f}x (target >= 1.6x where two cores are free)")
        for transport in ("direct", "ray"):
            inline, actor = actor_overhead(args.seconds, transport)
            print(f"null SUT p50 at 1k QPS, transport={transport}: inline {inline / 1e3:.0f} us, replica actor "
                  f"{actor / 1e3:.0f} us -> {(actor - inline) / 1e3:.0f} us added per query (target <= 100 us)")
        inline, actor = actor_overhead(args.seconds, "direct", sut="fake")
        print(f"fake SUT (sleeps 5 ms) p50 at 1k QPS, direct: inline {inline / 1e3:.0f} us, replica actor {actor / 1e3:.0f} us")
        print("Server lateness on one Ray shard (null SUT inline):")
        for q, v, sps, late in lateness_curve(args.seconds, [float(x) for x in args.qps.split(",")]):
            print(f"  target {q:>8,.0f} QPS: {v:<7} completed {sps:>9,.0f}/s  lateness p99 {late:8.3f} ms")
    finally:
        ray.shutdown()
    dt, worst = merge_cost()
    print(f"merge of 64 shard histograms: {dt * 1e3:.2f} ms (target < 50 ms); worst percentile error {worst * 100:.3f}% (target <= 0.1%)")


if __name__ == "__main__":
    main()
