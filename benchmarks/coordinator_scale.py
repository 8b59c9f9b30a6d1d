"""Coordinator cost: resident memory and finish time against queries and shards.

What the coordinator does at the end of a run: receive every shard's report (statistics, packed
per-second snapshots), merge them, judge the run and write the run directory. This script
measures exactly that, in a fresh coordinator process per point, on synthetic shard reports
whose histograms hold the stated number of queries (lognormal latencies, a 600-second run's
worth of snapshots per shard):

* queries 1e5, 1e6, 1e7, 1e8 on 16 shards: memory growth must stay under 100 MB across the range
  (shards ship histograms and counters, so nothing in the coordinator grows with queries);
* shards 1, 16, 64, 256 at 1e7 queries: finish (merge + verdict + every file) under 2 s at 256.

Each report is pickled to a file first, as it would cross the network, and the coordinator
process unpickles them one by one, as the Ray driver receives them. RSS is read from
/proc/self/status (VmRSS now, VmHWM peak) after imports and the run's preparation (the
baseline) and after finishing.

The plan table (``--plan``, also part of the full run) measures the driver's plan: for a Server
run of the ``null`` SUT with ``min_query_count`` = 1e5 .. 1e8 (``target_qps`` 1e9, so the count
sets the size and nothing is run), in a fresh process per point: the driver's RSS growth and
the time of ``prepare_run`` and of cutting the plan into 64 shard jobs; then one shard's
regeneration of its slice (its job pickled and unpickled, as it travels), in seconds per million
queries of the whole run and its RSS growth. ``--plan-root DIR`` measures the code of another
checkout (e.g. the main branch, for a before/after).

Measured on 2 shared cores (driver peak RSS growth; prepare_run; 64 jobs): before streaming,
1e5: 8 MB, 0.30 s, 0.01 s; 1e7: 387 MB, 0.89 s, 0.44 s; 1e8: 3831 MB, 10.2 s, 6.5 s (a 37 MB
slice per shard job). Streamed: 7 MB at every size from 1e5 to 1e8; prepare_run 0.3 s at 1e5 and
2.2-6.7 s at 1e8 (counting the schedule), jobs < 0.01 s, a 10 KB slice; a shard regenerates its
slice in 0.04-0.07 s per million queries of the whole run.

Usage:
    python benchmarks/coordinator_scale.py [--quick] [--plan] [--plan-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUN_SECONDS = 600
CHUNK = 5_000_000


def _rss_mb() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(val.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def make_reports(out: Path, queries: int, shards: int, seed: int = 0) -> None:
    """Pickle ``shards`` synthetic ShardReports holding ``queries`` samples in total."""
    from raybench.core.aggregate import RunStats
    from raybench.core.records import ShardReport, pack_snapshots

    rng = np.random.default_rng(seed)
    per = [queries // shards + (1 if k < queries % shards else 0) for k in range(shards)]
    bound = 80_000_000
    for k, n in enumerate(per):
        st = RunStats(bounds={"latency": bound}, by_schedule=True)
        done = 0
        while done < n:
            m = min(CHUNK, n - done)
            lat = np.rint(rng.lognormal(np.log(5e6), 0.4, m)).astype(np.int64)
            st.latency.record_many(lat)
            st.lateness.record_many(np.rint(rng.exponential(2e4, m)).astype(np.int64))
            st.over_bound["latency"] = st.over_bound.get("latency", 0) + int((lat > bound).sum())
            done += m
        st.samples_issued = st.samples_ok = st.queries_issued = n
        last = RUN_SECONDS * 1_000_000_000
        st.final = (last - shards + k, k, last - shards + k, last - shards + k + 1000, last + 5_000_000)
        st.last_done_ns = last + 5_000_000
        st.loop_lag.record_many(np.full(RUN_SECONDS * 100, 50_000, dtype=np.int64))
        snaps = [{"t_ns": (i + 1) * 1_000_000_000, "issued": n * (i + 1) // RUN_SECONDS,
                  "completed": n * (i + 1) // RUN_SECONDS, "errors": 0, "in_flight": 3,
                  "window_completed": n // RUN_SECONDS, "p50_ns": 5_000_000, "p99_ns": 12_000_000,
                  "lateness_p99_ns": 80_000} for i in range(RUN_SECONDS)]
        rep = ShardReport(shard=k, node=f"node-{k % 8}", stats=st, snapshots=pack_snapshots(snaps),
                          queries_issued=n, end_reason="plan exhausted", sut_name="fake")
        (out / f"report-{k:04d}.pkl").write_bytes(pickle.dumps(rep, protocol=5))


def coordinator(report_dir: str, run_dir: str, queries: int, shards: int) -> dict[str, float]:
    """The coordinator process: prepare, receive the reports one by one, finish; measure."""
    import datetime as dt

    from raybench.config import load_run_config
    from raybench.run import finish_run, prepare_run

    qps = queries / RUN_SECONDS
    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", f"run_dir={run_dir}",
                                 "settings.min_duration_ms=1000", "settings.server_target_qps=100",
                                 "settings.min_query_count=1", "report=false"])
    prepared = prepare_run(cfg)  # a small plan: the plan's own size is reported separately
    base_rss, _ = _rss_mb()
    t0 = time.perf_counter()
    reports = [pickle.loads(p.read_bytes()) for p in sorted(Path(report_dir).glob("report-*.pkl"))]
    t_recv = time.perf_counter()
    outcome = finish_run(prepared, reports, started=dt.datetime.now(dt.UTC), shards=shards)
    t_end = time.perf_counter()
    rss, peak = _rss_mb()
    assert outcome.metrics.samples_completed == queries, outcome.metrics.samples_completed
    return {"queries": queries, "shards": shards, "qps": qps, "base_rss_mb": base_rss, "rss_mb": rss,
            "peak_mb": peak, "growth_mb": peak - base_rss, "receive_s": t_recv - t0,
            "finish_s": t_end - t_recv, "total_s": t_end - t0, "validity": outcome.metrics.validity}


def point(queries: int, shards: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_reports(t, queries, shards)
        res = subprocess.run([sys.executable, __file__, "--coordinator", str(t), str(t / "run"), str(queries),
                              str(shards)], capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


PLAN_SHARDS = 64


def plan_point_child(queries: int, run_dir: str) -> dict[str, float]:
    """The driver process of the plan table: prepare and partition; then one shard's regeneration."""
    from raybench.config import load_run_config
    from raybench.run import prepare_run

    cfg = load_run_config(None, ["workload=synthetic", "sut=null", "scenario=Server", f"run_dir={run_dir}",
                                 "settings.min_duration_ms=0", "settings.server_target_qps=1e9",
                                 f"settings.min_query_count={queries}", f"max_plan_queries={2 * queries}",
                                 "report=false"])
    base_rss, _ = _rss_mb()
    t0 = time.perf_counter()
    prepared = prepare_run(cfg)
    t1 = time.perf_counter()
    jobs = prepared.jobs(PLAN_SHARDS)
    t2 = time.perf_counter()
    rss, peak = _rss_mb()
    assert prepared.plan.query_count == queries, prepared.plan.query_count
    blob = pickle.dumps(jobs[-1].slice, protocol=5)
    del jobs
    out = {"queries": queries, "base_rss_mb": base_rss, "driver_peak_mb": peak, "driver_growth_mb": peak - base_rss,
           "prepare_s": t1 - t0, "partition_s": t2 - t1, "slice_bytes": len(blob)}
    # one shard: unpickle its slice and build what its issuing loop reads (before T0)
    sl = pickle.loads(blob)
    shard_base, _ = _rss_mb()
    t3 = time.perf_counter()
    n_mine = 0
    for ph in sl.phases:
        n_mine += len(ph.intended_list())
        ph.query_ids_list()
        ph.samples_list()
    t4 = time.perf_counter()
    shard_rss, _ = _rss_mb()
    out.update(shard_queries=n_mine, regen_s=t4 - t3, regen_s_per_m=(t4 - t3) / (queries / 1e6),
               shard_growth_mb=shard_rss - shard_base)
    return out


def plan_point(queries: int, root: str | None) -> dict[str, float] | str:
    env = dict(os.environ)
    if root:
        env["PYTHONPATH"] = root
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--plan-child", str(queries),
                              str(Path(tmp) / "run")], capture_output=True, text=True, env=env)
        if res.returncode:
            return (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        return json.loads(res.stdout.strip().splitlines()[-1])


def plan_table(queries: list[int], root: str | None) -> None:
    where = root or "this checkout"
    print(f"plan on the driver ({where}): Server, null SUT, {PLAN_SHARDS} shard jobs; one shard's regeneration")
    print(f"{'queries':>10} {'growth MB':>9} {'prepare s':>9} {'jobs s':>7} {'slice KB':>8} {'shard q':>9} "
          f"{'regen s':>8} {'s / 1e6 q':>9} {'shard MB':>8}")
    rows = []
    for q in queries:
        r = plan_point(q, root)
        if isinstance(r, str):
            print(f"{q:>10.0e} failed: {r}")
            continue
        rows.append(r)
        print(f"{q:>10.0e} {r['driver_growth_mb']:>9.1f} {r['prepare_s']:>9.2f} {r['partition_s']:>7.2f} "
              f"{r['slice_bytes'] / 1024:>8.1f} {r['shard_queries']:>9} {r['regen_s']:>8.2f} "
              f"{r['regen_s_per_m']:>9.3f} {r['shard_growth_mb']:>8.1f}")
    if len(rows) > 1:
        spread = rows[-1]["driver_peak_mb"] - rows[0]["driver_peak_mb"]
        print(f"driver peak growth from {rows[0]['queries']:.0e} to {rows[-1]['queries']:.0e} queries: {spread:.1f} MB "
              f"(target < 100 MB): {'met' if spread < 100 else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1e5..1e7 queries and 1..64 shards only")
    ap.add_argument("--plan", action="store_true", help="only the plan table")
    ap.add_argument("--plan-root", help="measure the plan of the checkout in this directory (before/after)")
    ap.add_argument("--coordinator", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--plan-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plan_child:
        print(json.dumps(plan_point_child(int(args.plan_child[0]), args.plan_child[1])))
        return
    if args.plan or args.plan_root:
        plan_table([10**5, 10**6, 10**7] + ([] if args.quick else [10**8]), args.plan_root)
        return
    if args.coordinator:
        report_dir, run_dir, q, s = args.coordinator
        print(json.dumps(coordinator(report_dir, run_dir, int(q), int(s))))
        return
    queries = [10**5, 10**6, 10**7] + ([] if args.quick else [10**8])
    shard_counts = [1, 16, 64] + ([] if args.quick else [256])
    print(f"coordinator cost ({os.cpu_count()} cores); reports of a {RUN_SECONDS}-s run, pickled, received one by one")
    print(f"{'queries':>10} {'shards':>6} {'base MB':>8} {'peak MB':>8} {'growth MB':>9} {'receive s':>9} "
          f"{'finish s':>8} {'verdict':>8}")
    rows = []
    for q in queries:
        rows.append(point(q, 16))
    for s in shard_counts:
        if s != 16:
            rows.append(point(10**7, s))
    for r in rows:
        print(f"{r['queries']:>10.0e} {r['shards']:>6} {r['base_rss_mb']:>8.1f} {r['peak_mb']:>8.1f} "
              f"{r['growth_mb']:>9.1f} {r['receive_s']:>9.3f} {r['finish_s']:>8.3f} {r['validity']:>8}")
    by_q = [r for r in rows if r["shards"] == 16]
    spread = max(r["peak_mb"] for r in by_q) - min(r["peak_mb"] for r in by_q)
    biggest = max(rows, key=lambda r: r["shards"])
    print(f"peak memory spread from {by_q[0]['queries']:.0e} to {by_q[-1]['queries']:.0e} queries: {spread:.1f} MB "
          f"(target < 100 MB): {'met' if spread < 100 else 'NOT met'}")
    print(f"receive + finish at {biggest['shards']} shards: {biggest['total_s']:.3f} s (target < 2 s): "
          f"{'met' if biggest['total_s'] < 2 else 'NOT met'}")
    plan_table(queries, None)


if __name__ == "__main__":
    main()
