"""Harness fidelity: the latency each harness adds to the same fake SUT, per query, same run.

A SUT with log-normal delays (median 2 ms, sigma 0.3, seeded) answers a 1000 QPS Server run.
Every harness measures latency from the query's scheduled time; the SUT's own time is measured
where the SUT runs, so for every query::

    added = measured latency - time inside the SUT

is what the harness (and, on Ray, the transport) added. Printed: added p50 / p99 / max for

* MLPerf LoadGen driving a Python SUT (threads sleep the delay; its per-sample latency comes from
  LoadGen's trace, the SUT times itself from the issue callback to ``QuerySamplesComplete``);
* raybench in-process (the fake SUT in the shard's event loop);
* raybench on Ray, one node (shard actor -> replica actor over the authenticated direct channel;
  the replica times the SUT);
* raybench across two hosts (``--netns``: network namespaces with their own IPs, root only).

Target (../shared/targets.md): raybench on Ray within 2x LoadGen's added p50 and p99.

Usage:
    python benchmarks/harness_fidelity.py [--seconds 20] [--qps 1000] [--netns]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MEDIAN_MS, SIGMA, SEED = 2.0, 0.3, 7

LOADGEN_SCRIPT = r"""
import json, sys, threading, time
import numpy as np
import mlperf_loadgen as lg
qps, seconds, outdir, median_ms, sigma, seed = (float(sys.argv[1]), float(sys.argv[2]), sys.argv[3],
                                               float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
delays = (median_ms / 1e3) * np.exp(np.random.default_rng(seed).normal(0.0, sigma, 10_000_000))
sut_ns = []
lock = threading.Lock()
def issue(qs):
    for q in qs:
        start = time.monotonic_ns()
        with lock:
            k = len(sut_ns); sut_ns.append(0)
        def done(q=q, k=k, start=start):
            sut_ns[k] = time.monotonic_ns() - start
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0)])
        threading.Timer(float(delays[k]), done).start()
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda idx: None, lambda idx: None)
s = lg.TestSettings()
s.scenario = lg.TestScenario.Server
s.mode = lg.TestMode.PerformanceOnly
s.server_target_qps = qps
s.server_target_latency_ns = 100_000_000
s.min_duration_ms = int(seconds * 1000)
s.min_query_count = 100
ls = lg.LogSettings(); ls.log_output.outdir = outdir; ls.log_output.copy_summary_to_stdout = False
ls.enable_trace = True
lg.StartTestWithLogSettings(sut, qsl, s, ls)
lg.DestroyQSL(qsl); lg.DestroySUT(sut)
json.dump(sut_ns, open(outdir + "/sut_ns.json", "w"))
"""

_SAMPLE = re.compile(r'"name":"Sample","cat":"default","ph":"b".*?"sample_seq":(\d+).*?"issue_start_ns":(\d+),'
                     r'"complete_ns":(\d+)')
_LATENCY = re.compile(r'"name":"Latency","ph": ?"C".*?"issue_delay":(\d+),"issue_to_done":(\d+)')


def loadgen_added(qps: float, seconds: float) -> np.ndarray:
    """LoadGen: per sample, (issue delay + issue-to-done) from the trace minus the SUT's own time."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", LOADGEN_SCRIPT, str(qps), str(seconds), d, str(MEDIAN_MS), str(SIGMA),
                        str(SEED)], check=True, capture_output=True, timeout=3600)
        trace = Path(d, "mlperf_log_trace.json").read_text()
        sut_ns = np.asarray(json.loads(Path(d, "sut_ns.json").read_text()), dtype=np.int64)
    # Sample events are in sample_seq order of issue; LoadGen's Server issues samples in that order,
    # which is the order the SUT's issue callback saw them.
    latency = {int(m[1]): int(m[3]) for m in _SAMPLE.finditer(trace)}  # complete_ns: since scheduled
    seqs = np.array(sorted(latency), dtype=np.int64)
    lat = np.array([latency[k] for k in seqs.tolist()], dtype=np.int64)
    return lat - sut_ns[seqs]


def raybench_added(qps: float, seconds: float, executor: str, extra: list[str] | None = None) -> np.ndarray:
    """raybench: per sample, latency minus the SUT time the SUT's host measured (records kept)."""
    from raybench.config import load_run_config
    from raybench.run import run_benchmark

    with tempfile.TemporaryDirectory() as d:
        sets = ["workload=synthetic", "sut=fake", "scenario=Server", f"out={d}", f"executor={executor}",
                "report=false", "records=all", f"settings.server_target_qps={qps}",
                f"settings.min_duration_ms={int(seconds * 1000)}", "settings.server_target_latency_ns=100000000",
                f"sut.params.latency={{dist: lognormal, median_ms: {MEDIAN_MS}, sigma: {SIGMA}}}",
                f"sut.params.seed={SEED}", "lateness_p99_ms=1000", *(extra or [])]
        cfg = load_run_config(None, sets)
        ex = None
        if executor == "ray":
            import ray

            from raybench.ray.executor import RayExecutor

            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            ex = RayExecutor(cfg.ray)
        try:
            out = run_benchmark(cfg, ex) if ex is not None else run_benchmark(cfg)
        finally:
            if executor == "ray":
                import ray

                ray.shutdown()
        with np.load(out.run_dir / "records.npz") as z:
            keys = sorted({k.split("/")[0] for k in z.files})
            lat = np.concatenate([z[f"{k}/completed_ns"] - z[f"{k}/intended_ns"] for k in keys])
            sut = np.concatenate([z[f"{k}/sut_ns"] for k in keys])
            ok = np.concatenate([(z[f"{k}/error"] == 0) & (z[f"{k}/completed_ns"] > 0) for k in keys])
    return (lat - sut)[ok]


def netns_added(qps: float, seconds: float) -> np.ndarray | None:
    """raybench with the shard and the SUT replica on two hosts (network namespaces); root only."""
    if os.geteuid() != 0:
        print("  across hosts: skipped (needs root for network namespaces)")
        return None
    root = Path(__file__).resolve().parent.parent
    script = root / "scripts" / "netns_hosts.sh"
    env = dict(os.environ, RB_NETNS=f"rbf{os.getpid()}", RAY_AUTH_MODE="disabled")
    tmp = Path(tempfile.mkdtemp(prefix="rbf-"))

    def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], env=env, text=True, capture_output=True, check=check)

    try:
        sh("up")
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--object-store-memory", "100000000", "--disable-usage-stats"]
        sh("exec", "head", ray, "start", "--head", "--node-ip-address", "10.77.0.1", "--port", "6399", "--num-cpus",
           "0", "--include-dashboard", "false", "--temp-dir", str(tmp / "head"), *common)
        sh("exec", "load", ray, "start", "--address", "10.77.0.1:6399", "--node-ip-address", "10.77.0.2",
           "--temp-dir", str(tmp / "load"), "--num-cpus", "1", "--resources", '{"loadgen": 1}', *common)
        sh("exec", "sut", ray, "start", "--address", "10.77.0.1:6399", "--node-ip-address", "10.77.0.3",
           "--temp-dir", str(tmp / "sut"), "--num-cpus", "1", "--resources", '{"sut": 1}', *common)
        out = tmp / "run"
        sh("exec", "head", sys.executable, "-m", "raybench.cli", "run", "--workload", "synthetic", "--sut", "fake",
           "--scenario", "Server", "--address", "10.77.0.1:6399", "--out", str(out), "--quiet", "--no-report",
           "--set", "records=all", "--set", f"settings.server_target_qps={qps}",
           "--set", f"settings.min_duration_ms={int(seconds * 1000)}",
           "--set", "settings.server_target_latency_ns=100000000", "--set", "lateness_p99_ms=1000",
           "--set", f"sut.params.latency={{dist: lognormal, median_ms: {MEDIAN_MS}, sigma: {SIGMA}}}",
           "--set", f"sut.params.seed={SEED}", "--set", "ray.shard_resources={loadgen: 1}",
           "--set", "ray.replica_resources={sut: 1}", "--set", "ray.shard_num_cpus=0",
           "--set", "ray.replica_num_cpus=0", check=False)
        (run_dir,) = list(out.iterdir())
        with np.load(run_dir / "records.npz") as z:
            lat = z["shard0/completed_ns"] - z["shard0/intended_ns"]
            ok = (z["shard0/error"] == 0) & (z["shard0/completed_ns"] > 0)
            return (lat - z["shard0/sut_ns"])[ok]
    finally:
        sh("down", check=False)


def _row(name: str, added: np.ndarray | None) -> dict[str, float] | None:
    if added is None or not added.size:
        return None
    s = np.sort(added)
    r = {"p50": s[int(s.size * 0.5)] / 1e6, "p99": s[min(int(s.size * 0.99), s.size - 1)] / 1e6, "max": s[-1] / 1e6}
    print(f"  {name:<26} n={s.size:>7}  added p50 {r['p50']:8.3f} ms  p99 {r['p99']:8.3f} ms  max {r['max']:8.3f} ms")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--qps", type=float, default=1000.0)
    ap.add_argument("--netns", action="store_true", help="also run shard and replica on two hosts (root)")
    args = ap.parse_args()
    print(f"latency added to a log-normal fake SUT (median {MEDIAN_MS} ms, sigma {SIGMA}), Server {args.qps:g} QPS, "
          f"{args.seconds:g} s, {os.cpu_count()} cores")
    lg = _row("MLPerf LoadGen", loadgen_added(args.qps, args.seconds))
    _row("raybench in-process", raybench_added(args.qps, args.seconds, "inprocess"))
    ray = _row("raybench on Ray (1 node)", raybench_added(args.qps, args.seconds, "ray"))
    if args.netns:
        _row("raybench across 2 hosts", netns_added(args.qps, args.seconds))
    if lg and ray:
        for p in ("p50", "p99"):
            ratio = ray[p] / lg[p] if lg[p] > 0 else float("inf")
            print(f"raybench on Ray / LoadGen added {p}: {ratio:.2f}x (target <= 2x): {'met' if ratio <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
