"""A Server run across three hosts, each a network namespace with its own IP (scripts/netns_hosts.sh).

``head`` (10.77.0.1) runs the Ray head (no CPUs) and the driver, ``load`` (10.77.0.2) a Ray worker
with ``{"loadgen": 2}``, ``sut`` (10.77.0.3) one with ``{"sut": 2}``. The driver is the real
``raybench run`` command, started inside ``head`` exactly as docs/USAGE.md shows ("Trying a
multi-host run on one machine"), so the shards reach the replicas over a real (virtual) LAN, by IP.

What it shows: placement by IP; the direct channel bound to the SUT node's IP; the same verdict
and percentiles as an in-process run of the same config (see :func:`test_percentiles_match_in_process`
for the tolerance); a rogue connection from another host refused and counted; a dead SUT host
ending the run INVALID by its deadline with that host named and the shards' measurements kept.

What it cannot show: every namespace shares the machine's clocks, so clock skew between hosts is
not exercised here. Needs root and iproute2; skipped otherwise. ``slow``: CI runs it explicitly
(.ci/run), after the default ``pytest``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "netns_hosts.sh"
BIN = Path(sys.executable).parent  # the venv's ray and raybench, in every namespace
SUBNET = "10.77.0"
HEAD, LOAD, SUT = f"{SUBNET}.1", f"{SUBNET}.2", f"{SUBNET}.3"
PORT = 6379  # each namespace has its own port space: no clash with anyone's Ray on the machine
ADDRESS = f"{HEAD}:{PORT}"

LATENCY = {"median_ms": 2.0, "sigma": 0.3, "seed": 0}
# The run both executors perform: same workload, schedule (MLPerf seeds) and fake-SUT seeds.
SETTINGS = (
    "sut.params.latency={dist: lognormal, median_ms: 2, sigma: 0.3}",
    "settings.server_target_qps=200",
    "settings.min_duration_ms=4000",
    # Loose bounds (1 s) on latency and the harness' own send lateness: this test is about what
    # crosses hosts, not about the timing of a 2-core machine shared with other work (seen here:
    # p99 230 ms in a run during a burst of other processes).
    "settings.server_target_latency_ns=1000000000",
    "lateness_p99_ms=1000",
)
RAY_SETS = (
    "ray.shard_resources={loadgen: 1}",
    "ray.replica_resources={sut: 1}",
    "ray.replicas=2",
    "ray.shard_num_cpus=0",
    "ray.replica_num_cpus=0",
    "ray.start_lead_s=1.0",
)
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
BUDGET_MS = {"p50": 3.0, "p90": 3.0, "p99": 20.0}  # real-time noise: test_percentiles_match_in_process
HIST_REL_ERR = 1 / 2048  # raybench.core.histogram: a bucket midpoint is within 1/2048 of the value


def _skip_reason() -> str | None:
    """Why this machine cannot build the hosts (one line), or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    for tool in ("ip", "ss", "bash", "timeout"):
        if shutil.which(tool) is None:
            return f"'{tool}' not found (apt-get install -y iproute2)"
    if not (BIN / "ray").exists() or not (BIN / "raybench").exists():
        return f"ray/raybench not installed in {BIN}"
    probe = f"rbprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip() or r.returncode}"
    return None


@dataclass
class Hosts:
    """The three hosts and a Ray cluster across them (the ``hosts`` fixture)."""

    prefix: str
    env: dict[str, str]
    work: Path  # Ray's temp dirs (short paths: Ray's unix sockets live there) and rogue markers

    def sh(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``scripts/netns_hosts.sh ARGS...`` with this fixture's prefix."""
        r = subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"netns_hosts.sh {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r

    def run(self, host: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.sh("exec", host, *cmd, timeout=timeout)

    def drive(self, run_dir: Path, *sets: str, on_running: Callable[[], None] | None = None,
              timeout: float = 120) -> Driven:
        """Run the ``raybench run`` driver inside ``head``; call ``on_running`` when it prints that
        the first shard reported (about 1 s after T0)."""
        cmd = [str(BIN / "raybench"), "run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Server",
               "--address", ADDRESS, "--shards", "2", "--quiet", "--no-report"]
        for s in (*SETTINGS, *RAY_SETS, f"run_dir={run_dir}", *sets):
            cmd += ["--set", s]
        out_path = run_dir.parent / f"{run_dir.name}.stdout"
        started = time.monotonic()
        running_at: list[float] = []
        err: list[str] = []
        with open(out_path, "w") as out:
            p = subprocess.Popen(["bash", str(SCRIPT), "exec", "head", *cmd], env=self.env, stdout=out,
                                 stderr=subprocess.PIPE, text=True)
            timer = threading.Timer(timeout, p.kill)
            timer.start()
            try:
                assert p.stderr is not None
                for line in p.stderr:
                    err.append(line)
                    if line.startswith("raybench: running") and not running_at:
                        running_at.append(time.monotonic())
                        if on_running is not None:
                            on_running()
                rc = p.wait()
            finally:
                timer.cancel()
                if p.poll() is None:
                    p.kill()
                    p.wait()
        ended = time.monotonic()
        result_path = run_dir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        assert result, f"no result.json (rc {rc}): {''.join(err)[-3000:]}"
        return Driven(rc, result, run_dir, "".join(err), out_path.read_text(), started,
                      running_at[0] if running_at else None, ended)

    def replica_ports(self) -> list[int]:
        """The SUT replicas' direct-channel ports: what ``ss`` shows them listening on in ``sut``."""
        r = self.run("sut", "ss", "-Hltnp")
        ports = []
        for line in r.stdout.splitlines():
            cols = line.split()
            if "ray::SUTReplica" in line and len(cols) >= 4 and cols[3].startswith(f"{SUT}:"):
                ports.append(int(cols[3].rsplit(":", 1)[1]))
        return sorted(ports)


@dataclass
class Driven:
    """One driver run: exit code, result.json, run directory, output and timings (monotonic s)."""

    rc: int
    result: dict[str, Any]
    run_dir: Path
    stderr: str
    stdout: str
    started: float
    running_at: float | None
    ended: float


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    """Three namespaces on a bridge and a Ray cluster across them; everything torn down after."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"rbn{os.getpid() % 100000}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))  # short: Ray's socket paths live under it
    env = dict(os.environ)
    env.update(RB_NETNS=prefix, RB_NETNS_SUBNET=SUBNET, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    h = Hosts(prefix, env, work)
    common = ("--object-store-memory", "100000000", "--disable-usage-stats")
    try:
        h.sh("up")
        h.run("head", str(BIN / "ray"), "start", "--head", "--node-ip-address", HEAD, "--port", str(PORT),
              "--num-cpus", "0", "--include-dashboard", "false", "--temp-dir", str(work / "head"), *common)
        for host, ip, res in (("load", LOAD, '{"loadgen": 2}'), ("sut", SUT, '{"sut": 2}')):
            h.run(host, str(BIN / "ray"), "start", "--address", ADDRESS, "--node-ip-address", ip,
                  "--temp-dir", str(work / host), "--num-cpus", "2", "--resources", res, *common)
        yield h
    finally:
        h.sh("down", check=False)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------- helpers
def _send_rogue_frame(h: Hosts, port: int, marker: Path) -> bytes:
    """From ``head``: connect to the replica's port and send a request frame without the handshake.

    The frame's pickle would call ``os.mkdir(marker)`` in whatever process loaded it. Returns the
    bytes received before the replica closed the connection.
    """
    class _Mkdir:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.mkdir, (str(marker),))

    body = pickle.dumps((7, [0], [_Mkdir()], False), protocol=5)
    frame = struct.pack("!IQB", len(body), 1, 0) + body  # a request frame, as raybench.ray.direct frames them
    code = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)\n"
        "s.sendall(bytes.fromhex(sys.argv[3]))\n"
        "got = b''\n"
        "try:\n"
        "    while chunk := s.recv(4096):\n"
        "        got += chunk\n"
        "except ConnectionResetError:\n"
        "    pass\n"
        "sys.stdout.write(got.hex())\n"
    )
    r = h.run("head", sys.executable, "-c", code, SUT, str(port), frame.hex(), timeout=30)
    return bytes.fromhex(r.stdout.strip())


def _fake_delays_ms(stream: int, n: int) -> np.ndarray:
    """The first ``n`` delays the fake SUT sleeps for with ``ctx.shard == stream``.

    Copied from reference_suts/fake/sut.py (``FakeSUT.start`` seeds ``default_rng([seed, shard])``;
    ``FakeSUT._sample`` draws lognormal delays in blocks of 4096).
    """
    assert n <= 4096
    rng = np.random.default_rng([LATENCY["seed"], stream])
    return LATENCY["median_ms"] * np.exp(rng.normal(0.0, LATENCY["sigma"], 4096))[:n]


def _pct(values: np.ndarray, p: float) -> float:
    """LoadGen's percentile (sorted[int(n * p)])."""
    v = np.sort(values)
    return float(v[min(int(v.shape[0] * p), v.shape[0] - 1)])


def _hist_pcts(run_dir: Path) -> dict[str, float]:
    """Percentiles (ms) of the merged latency histogram in histograms.json."""
    from raybench.core.histogram import Histogram

    h = Histogram.from_dict(json.loads((run_dir / "histograms.json").read_text())["latency"]["histogram"])
    return {k: h.percentile(p) / 1e6 for k, p in PERCENTILES.items()}


def _node_ids(run_dir: Path) -> dict[str, str]:
    """IP -> Ray node id, from system.json."""
    nodes = json.loads((run_dir / "system.json").read_text())["nodes"]
    return {n["address"]: n["node_id"] for n in nodes}


# ------------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def across(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Server run across hosts; mid-run, ``head`` sends a pickle frame to a replica's port."""
    marker = hosts.work / "pwned"
    rogue: dict[str, Any] = {}

    def attack() -> None:
        rogue["ports"] = hosts.replica_ports()
        rogue["got"] = _send_rogue_frame(hosts, rogue["ports"][0], marker)

    d = hosts.drive(tmp_path_factory.mktemp("across") / "run", on_running=attack)
    return {"driven": d, "rogue": rogue, "marker": marker}


def _run_in_process(run_dir: Path) -> dict[str, Any]:
    """The same run with InProcessExecutor (in this process, never beside a cross-host run)."""
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=Server", "shards=2", "report=false",
                                 f"run_dir={run_dir}", *SETTINGS])
    return run_benchmark(cfg, InProcessExecutor(shards=2)).result


def _compare(across_dir: Path, across: dict[str, Any], in_dir: Path, inproc: dict[str, Any]) -> tuple[list[str], bool]:
    """Check one cross-host run against one in-process run (see test_percentiles_match_in_process).

    The exact checks assert here; returns the report rows and whether every percentile difference
    is within its real-time tolerance.
    """
    assert across["validity"] == inproc["validity"] == "VALID", (across["invalid_reasons"], inproc["invalid_reasons"])
    # The schedule is the plan's, whatever the executor: identical counts.
    for key in ("queries_issued", "samples_issued", "samples_completed"):
        assert across[key] == inproc[key], key
    n = inproc["samples_issued"]
    per_shard = [s["samples_issued"] for s in inproc["per_shard"]]
    delays_in = np.concatenate([_fake_delays_ms(k, c) for k, c in enumerate(per_shard)])
    streams = [_fake_delays_ms(i, n) for i in range(2)]
    across_h, in_h = _hist_pcts(across_dir), _hist_pcts(in_dir)
    rows, within = [], True
    for key, p in PERCENTILES.items():
        env = [_pct(np.concatenate([streams[0][:a], streams[1][: n - a]]), p) for a in range(n + 1)]
        lo, hi = min(env), max(env)
        exact_across, exact_in = across["latency_ns"][key] / 1e6, inproc["latency_ns"][key] / 1e6
        assert abs(across_h[key] - exact_across) <= exact_across * HIST_REL_ERR + 1e-6, key
        assert abs(in_h[key] - exact_in) <= exact_in * HIST_REL_ERR + 1e-6, key
        assert exact_in >= _pct(delays_in, p) - 1e-6, (key, exact_in)  # never faster than the sleeps
        assert exact_across >= lo - 1e-6, (key, exact_across, lo)
        tol = (across_h[key] + in_h[key]) * HIST_REL_ERR + (hi - lo) + BUDGET_MS[key]
        ok = abs(across_h[key] - in_h[key]) <= tol
        within = within and ok
        rows.append(f"{key}: in-process {in_h[key]:.3f} ms, across hosts {across_h[key]:.3f} ms, "
                    f"delays {_pct(delays_in, p):.3f} / [{lo:.3f}, {hi:.3f}] ms, tolerance {tol:.3f} ms"
                    f"{'' if ok else '  <-- over'}")
    rows.append("send lateness p99 / event-loop lag p99: in-process "
                f"{inproc['lateness_ns']['p99'] / 1e6:.3f} / {inproc['loop_lag_ns']['p99'] / 1e6:.3f} ms, "
                f"across hosts {across['lateness_ns']['p99'] / 1e6:.3f} / {across['loop_lag_ns']['p99'] / 1e6:.3f} ms; "
                f"n = {n}")
    return rows, within


# ----------------------------------------------------------------------------------------- tests
def test_valid_run_places_shards_and_replicas_by_ip(across: dict[str, Any]) -> None:
    d: Driven = across["driven"]
    r = d.result
    assert d.rc == 0 and r["validity"] == "VALID", (r["invalid_reasons"], d.stderr[-2000:])
    assert r["num_errors"] == 0 and r["samples_completed"] == r["samples_issued"] > 0
    # Shards on the load host, replicas on the SUT host; each label is hostname/IP/node id.
    ids = _node_ids(d.run_dir)
    assert set(ids) == {HEAD, LOAD, SUT}
    shard_nodes = [s["node"] for s in r["per_shard"]]
    assert len(shard_nodes) == 2 and all(f"/{LOAD}/{ids[LOAD][:8]}" in n for n in shard_nodes), shard_nodes
    replicas = json.loads((d.run_dir / "system.json").read_text())["sut_replicas"]
    assert len(replicas) == 2 and all(f"/{SUT}/{ids[SUT][:8]}" in x["node"] for x in replicas), replicas
    # The direct channel: authenticated, bound to the SUT node's IP (ss saw both ports there).
    t = r["transport"]
    assert (t["kind"], t["bind"], t["authenticated"]) == ("direct", "node-ip", True)
    assert len(across["rogue"]["ports"]) == 2
    assert [x["accepted_connections"] for x in t["replicas"]] == [2, 2]  # one per shard


def test_connection_without_the_secret_is_refused(across: dict[str, Any]) -> None:
    d: Driven = across["driven"]
    got: bytes = across["rogue"]["got"]
    assert len(got) in (0, 36)  # at most the replica's greeting: never a proof or a response
    assert not across["marker"].exists()  # the pickle was never loaded
    t = d.result["transport"]
    assert t["rejected_connections"] == 1
    (peer,) = t["rejected_peers"]
    assert re.fullmatch(rf"replica [01]: {re.escape(HEAD)}:\d+", peer), peer  # refused; came from the head host
    assert d.result["validity"] == "VALID"


def test_percentiles_match_in_process(hosts: Hosts, across: dict[str, Any],
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """Same verdict and schedule; merged percentiles within the histogram's error plus a budget.

    Tolerance, per percentile:
      * the histogram: each side within 1/2048 of its exact value;
      * the delays: in-process, shard k's fake SUT sleeps the first n_k draws of stream [0, k];
        across hosts the draws come from the replicas' streams, replica i serving a_i queries
        (a_0 + a_1 = n) that the test cannot see, so the test computes the percentile of the
        delays for every possible split and allows that envelope's spread;
      * the real-time noise (BUDGET_MS): across hosts every query also crosses two veth pairs and
        a bridge, is pickled twice each way and wakes two more event loops, in five busy
        processes instead of one (measured on this 2-core machine shared with other work, in
        undisturbed pairs of runs: +0.7 to +1.4 ms at p50 and +0.5 to +2.5 ms at p90 over
        in-process), so p50 and p90 get 3 ms; p99 of ~800 queries is the 9th slowest, and one
        scheduling stall of a process (send lateness up to 40 ms seen here) delays ~8 queries at
        200 QPS, on either side (p99 differences seen: -13 to +12 ms), so p99 gets 20 ms.
    A burst of contention from other processes can still push one run of a pair out (seen twice
    in about fifteen pairs: p90 14.8 ms across hosts against 5.2 ms in-process; in-process p99
    51.9 ms with its event loop 17.8 ms late at p99), so the real-time tolerance alone gets a
    second pair of runs; the exact checks (counts, verdict, histogram error, never faster than
    the sleeps) hold on every run, and a systematic error fails both attempts.
    """
    d: Driven = across["driven"]
    in_dir = tmp_path_factory.mktemp("inprocess") / "run"
    rows, within = _compare(d.run_dir, d.result, in_dir, _run_in_process(in_dir))
    print("\n" + "\n".join(rows))
    if within:
        return
    again = hosts.drive(tmp_path_factory.mktemp("across2") / "run")
    in_dir2 = tmp_path_factory.mktemp("inprocess2") / "run"
    rows2, within2 = _compare(again.run_dir, again.result, in_dir2, _run_in_process(in_dir2))
    print("second attempt:\n" + "\n".join(rows2))
    assert within2, "\n".join(["first attempt:", *rows, "second attempt:", *rows2])


def test_dead_sut_host_invalidates_by_deadline_and_keeps_measurements(hosts: Hosts, across: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    """Last: kills every process of the SUT host (its raylet, workers and both replicas)."""
    killed: list[float] = []

    def kill_sut_host() -> None:
        assert hosts.sh("pids", "sut").stdout.split(), "nothing runs in the SUT host"
        hosts.sh("kill", "sut")
        killed.append(time.monotonic())

    # A 20 s schedule; the run's deadline is max_duration + grace = 30 s after T0.
    # records=shard: each shard writes its own per-sample records file, as a large run would.
    d = hosts.drive(tmp_path / "run", "settings.min_duration_ms=20000", "settings.max_duration_ms=20000",
                    "deadline_grace_s=10", "records=shard", on_running=kill_sut_host)
    r = d.result
    assert killed, "the SUT host was never killed"
    assert d.running_at is not None
    assert d.rc == 1 and r["validity"] == "INVALID"
    assert d.ended - killed[0] < 30, "the run outlived its deadline"
    print(f"\nSUT host killed {killed[0] - d.running_at:.1f} s after 'running'; the driver exited "
          f"{d.ended - killed[0]:.1f} s later; {r['samples_completed']} of {r['samples_issued']} samples completed")
    ids = _node_ids(d.run_dir)
    reasons = r["invalid_reasons"]
    named = [x for x in reasons if SUT in x and ids[SUT][:8] in x and "died" in x]
    assert named, reasons
    # The shards' measurements are kept: counts, per-shard records and the merged histogram.
    assert r["samples_issued"] > 0 and r["samples_completed"] > 0
    assert len(r["per_shard"]) == 2 and all(s["samples_completed"] > 0 for s in r["per_shard"])
    for k in range(2):
        with np.load(d.run_dir / f"records-shard{k}.npz") as rec:
            ok = (rec["completed_ns"] > 0) & (rec["error"] == 0)
            assert rec["completed_ns"].shape[0] == r["per_shard"][k]["samples_issued"]
            assert ok.sum() == r["per_shard"][k]["samples_completed"]
    hist = json.loads((d.run_dir / "histograms.json").read_text())["latency"]["percentiles_ns"]
    assert hist["p50"] > 0
    assert "Result is : INVALID" in (d.run_dir / "mlperf_log_summary.txt").read_text()
