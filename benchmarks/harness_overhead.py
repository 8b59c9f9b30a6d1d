"""Harness overhead: raybench's loadgen vs MLPerf LoadGen on the same null SUT, same machine, same run.

Measures, for both harnesses driving a Python SUT that completes every sample at once:

1. Offline samples/s (one query of ``1.1 x min_duration x expected_qps`` samples).
2. Server at increasing target QPS: validity, completed samples/s, p99 latency; for raybench also
   the send lateness p99 (LoadGen does not report how late it sent).

Prints the figures and the ratios (targets in ../shared/targets.md: Offline >= 1.0x LoadGen;
highest VALID Server QPS on one shard >= 0.5x LoadGen's; lateness p99 <= 1 ms at 10k QPS).

Usage:
    python benchmarks/harness_overhead.py [--qps 1000,10000,20000,40000,60000] [--seconds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

LOADGEN_SCRIPT = r"""
import json, os, sys
import mlperf_loadgen as lg
scenario, qps, seconds, outdir = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def issue(qs):
    lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in qs])
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda idx: None, lambda idx: None)
s = lg.TestSettings()
s.mode = lg.TestMode.PerformanceOnly
s.min_duration_ms = int(seconds * 1000)
s.min_query_count = 100
if scenario == "Offline":
    s.scenario = lg.TestScenario.Offline
    s.offline_expected_qps = qps
else:
    s.scenario = lg.TestScenario.Server
    s.server_target_qps = qps
    s.server_target_latency_ns = 10_000_000
ls = lg.LogSettings(); ls.log_output.outdir = outdir; ls.log_output.copy_summary_to_stdout = False; ls.enable_trace = False
lg.StartTestWithLogSettings(sut, qsl, s, ls)
lg.DestroyQSL(qsl); lg.DestroySUT(sut)
vals = {}
for line in open(os.path.join(outdir, "mlperf_log_detail.txt")):
    if line.startswith(":::MLLOG"):
        o = json.loads(line[9:]); vals.setdefault(o["key"], o["value"])
print(json.dumps({k: vals.get(k) for k in ("result_validity", "result_samples_per_second", "result_completed_samples_per_sec",
      "result_99.00_percentile_latency_ns", "result_query_count")}))
"""


def run_loadgen(scenario: str, qps: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", LOADGEN_SCRIPT, scenario, str(qps), str(seconds), d],
                             capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["wall_s"] = wall
        return res


def run_raybench(scenario: str, qps: float, seconds: float, max_batch: int = 1024) -> dict[str, Any]:
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    with tempfile.TemporaryDirectory() as d:
        sets = ["workload=synthetic", "sut=null", f"scenario={scenario}", f"out={d}", "executor=inprocess", "report=false",
                f"settings.min_duration_ms={int(seconds * 1000)}", "settings.min_query_count=100",
                f"sut.params.max_batch={max_batch}", "lateness_p99_ms=10"]
        if scenario == "Offline":
            sets.append(f"settings.offline_expected_qps={qps}")
        else:
            sets += [f"settings.server_target_qps={qps}", "settings.server_target_latency_ns=10000000"]
        t = time.perf_counter()
        m = run_benchmark(load_run_config(None, sets), InProcessExecutor()).metrics
        return {"validity": m.validity, "sps": m.samples_per_second, "p99_ns": m.latency.get("p99", 0),
                "late_p99_ns": m.lateness["p99"], "n": m.samples_completed, "wall_s": time.perf_counter() - t,
                "reasons": m.invalid_reasons}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qps", default="1000,10000,20000,40000,60000")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--offline-qps", type=float, default=800_000)
    args = ap.parse_args()
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        sys.exit("mlcommons-loadgen is not installed: pip install -e '.[test]'")
    print(f"# harness overhead, null SUT, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("\n## Offline (one query; samples/s = samples / time of the last completion)")
    lg = run_loadgen("Offline", args.offline_qps, args.seconds)
    rb = run_raybench("Offline", args.offline_qps, args.seconds)
    rb1 = run_raybench("Offline", args.offline_qps / 8, args.seconds, max_batch=1)
    print(f"LoadGen   : {lg['result_samples_per_second']:>12,.0f} samples/s  ({lg['result_validity']})")
    print(f"raybench  : {rb['sps']:>12,.0f} samples/s  (batches of 1024)  ratio {rb['sps'] / lg['result_samples_per_second']:.2f}x")
    print(f"raybench  : {rb1['sps']:>12,.0f} samples/s  (one sample per SUT call)  ratio {rb1['sps'] / lg['result_samples_per_second']:.2f}x")
    print("\n## Server (Poisson; p99 bound 10 ms; raybench also flags send lateness p99 > 10 ms)")
    print(f"{'target QPS':>10} | {'LoadGen':>8} {'done/s':>9} {'p99 ms':>7} | {'raybench':>8} {'done/s':>9} {'p99 ms':>7} {'late p99':>8}")
    best_lg = best_rb = 0.0
    late_at_10k = None
    for q in [float(x) for x in args.qps.split(",")]:
        lgr = run_loadgen("Server", q, args.seconds)
        rbr = run_raybench("Server", q, args.seconds)
        if lgr["result_validity"] == "VALID":
            best_lg = max(best_lg, q)
        if rbr["validity"] == "VALID":
            best_rb = max(best_rb, q)
        if q == 10000:
            late_at_10k = rbr["late_p99_ns"]
        print(f"{q:>10,.0f} | {lgr['result_validity']:>8} {lgr['result_completed_samples_per_sec']:>9,.0f} "
              f"{lgr['result_99.00_percentile_latency_ns'] / 1e6:>7.3f} | {rbr['validity']:>8} {rbr['sps']:>9,.0f} "
              f"{rbr['p99_ns'] / 1e6:>7.3f} {rbr['late_p99_ns'] / 1e6:>8.3f}")
    print("\n## Ratios")
    print(f"Offline samples/s, raybench / LoadGen       : {rb['sps'] / lg['result_samples_per_second']:.2f}x (target >= 1.0x)")
    if best_lg:
        print(f"highest VALID Server QPS, raybench / LoadGen : {best_rb:,.0f} / {best_lg:,.0f} = {best_rb / best_lg:.2f}x (target >= 0.5x)")
    if late_at_10k is not None:
        print(f"raybench send lateness p99 at 10k QPS       : {late_at_10k / 1e6:.3f} ms (target <= 1 ms)")


if __name__ == "__main__":
    main()
