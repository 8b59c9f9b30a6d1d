"""CPU time per query on the Ray path: the shard actor and the SUT replica actor, vs the SUT inline.

Wall-clock latency on a shared machine is mostly other processes' noise; CPU time a process
spends is not. This script runs Server at a fixed rate on a local Ray (one shard, and either the
SUT inline in the shard or one replica actor over ``ray.transport``) and reads each actor
process's ``utime + stime`` from ``/proc/<pid>/stat`` (sampled every 20 ms while it lives).

Setup (building the library, connecting, imports) costs the same whatever the run's length, so
each configuration runs twice, short and long, and the figure is the difference:
``(cpu_long - cpu_short) / (queries_long - queries_short)``, in microseconds per query. Both runs
share the seed, so the short run's schedule is the long run's beginning.

Printed, all in the same run: the inline SUT's shard (the in-process baseline), then the Ray
path's shard and replica, and what the Ray path adds (shard + replica - inline).

Usage:
    python benchmarks/ray_cpu_per_query.py [--qps 2000] [--seconds 10] [--short 2] [--sut null]
        [--transport direct] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from typing import Any

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_ROLES = {"ray::LoadGenShard": "shard", "ray::SUTReplica": "replica"}


def _children(root: int) -> set[int]:
    """Every live descendant of ``root`` (the local Ray's raylet and workers descend from the driver)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        parent[int(name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out |= frontier
    return out


def _cpu_s(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of ``pid`` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) * _TICK_S, int(fields[12]) * _TICK_S


def _role(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None
    for prefix, role in _ROLES.items():
        if title.startswith(prefix):
            return role
    return None


class CpuSampler:
    """Follows the shard and replica actor processes of this driver's Ray; CPU from when each took its role."""

    def __init__(self, period_s: float = 0.02) -> None:
        self.period_s = period_s
        self._root = os.getpid()
        self._first: dict[int, tuple[str, tuple[float, float]]] = {}  # pid -> (role, cpu when first seen in it)
        self._last: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._scan_every = 10

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            if n % self._scan_every == 0:
                for pid in _children(self._root):
                    if pid not in self._first:
                        role, cpu = _role(pid), _cpu_s(pid)
                        if role is not None and cpu is not None:
                            self._first[pid] = (role, cpu)
            for pid in self._first:
                cpu = _cpu_s(pid)
                if cpu is not None:
                    self._last[pid] = cpu
            n += 1
            self._stop.wait(self.period_s)

    def by_role(self) -> dict[str, float]:
        """CPU seconds per role since each process took it (``<role>``), and the system part (``<role>_sys``)."""
        out: dict[str, float] = {}
        for pid, (role, (user0, sys0)) in self._first.items():
            user, sys = self._last.get(pid, (user0, sys0))
            out[role] = out.get(role, 0.0) + user - user0 + sys - sys0
            out[f"{role}_sys"] = out.get(f"{role}_sys", 0.0) + sys - sys0
        return out


def _run(sets: list[str]) -> tuple[dict[str, float], int]:
    """One run; CPU seconds by role and the number of queries issued."""
    from raybench.config import load_run_config
    from raybench.ray.executor import RayExecutor
    from raybench.run import run_benchmark

    with tempfile.TemporaryDirectory() as d:
        cfg = load_run_config(None, ["workload=synthetic", f"out={d}", "report=false", "ray.start_lead_s=1", *sets])
        with CpuSampler() as sampler:
            metrics = run_benchmark(cfg, RayExecutor(cfg.ray)).metrics
            time.sleep(0.1)  # a last sample of processes still alive
        return sampler.by_role(), int(metrics.queries_issued)


def per_query(args: argparse.Namespace, inline: bool) -> dict[str, float]:
    """Microseconds of CPU per query by role, from a short and a long run of one configuration."""
    base = [f"sut={args.sut}", "scenario=Server", "shards=1", "ray.replicas=1", f"ray.transport={args.transport}",
            f"settings.server_target_qps={args.qps}", "lateness_p99_ms=1000", "ray.shard_num_cpus=0.5",
            "ray.replica_num_cpus=0.5", f"ray.sut_inline={'true' if inline else 'false'}",
            "settings.server_target_latency_ns=1000000000"]
    if args.sut == "fake":
        base.append("sut.params.latency={dist: constant, ms: 1}")
    runs = [_run([*base, f"settings.min_duration_ms={int(s * 1000)}"]) for s in (args.short, args.seconds)]
    (cpu_a, n_a), (cpu_b, n_b) = runs
    if n_b <= n_a:
        raise SystemExit(f"--seconds {args.seconds} issued no more queries than --short {args.short}")
    return {key: (cpu_b.get(key, 0.0) - cpu_a.get(key, 0.0)) / (n_b - n_a) * 1e6
            for key in ("shard", "replica", "shard_sys", "replica_sys")}


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qps", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="the long run's min_duration")
    ap.add_argument("--short", type=float, default=2.0, help="the short run's min_duration (subtracted)")
    ap.add_argument("--sut", default="null", choices=("null", "fake"))
    ap.add_argument("--transport", default="direct", choices=("direct", "ray"))
    ap.add_argument("--repeat", type=int, default=1, help="measure both paths this many times")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False)
    print(f"# CPU per query, Server {args.qps:,.0f} QPS, {args.sut} SUT, transport={args.transport}, "
          f"{args.seconds:g} s - {args.short:g} s runs, load average {os.getloadavg()[0]:.2f}")
    rows: list[tuple[float, float, float, float, float]] = []
    try:
        for _ in range(args.repeat):
            base = per_query(args, inline=True)
            ray_path = per_query(args, inline=False)
            rows.append((base["shard"], ray_path["shard"], ray_path["replica"], ray_path["shard_sys"],
                         ray_path["replica_sys"]))
            print(_line("", *rows[-1]), flush=True)
    finally:
        ray.shutdown()
    if len(rows) > 1:  # other processes only ever add CPU time (cache, SMT): the minimum is the cost
        print(_line(f"min of {len(rows)}: ", *(min(col) for col in zip(*rows, strict=True))))


def _line(head: str, inline: float, shard: float, replica: float, shard_sys: float, replica_sys: float) -> str:
    return (f"{head}inline SUT: shard {inline:.1f} us/query | replica actor: shard {shard:.1f} (system {shard_sys:.1f}) "
            f"us/query, replica {replica:.1f} (system {replica_sys:.1f}) us/query | Ray path adds "
            f"{shard + replica - inline:.1f} us CPU/query")


if __name__ == "__main__":
    main()
