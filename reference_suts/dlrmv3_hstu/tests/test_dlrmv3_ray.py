"""DLRMv3 on Ray: embedding-shard actors, one global streaming scheduler, and the CLI run.

The CLI test runs first and starts its own embedded Ray in a subprocess (before this module's
``ray_local`` exists); the others share one module-scoped local Ray.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ray")

from raybench.core.protocols import Query, SUTContext  # noqa: E402
from raybench.registry import get_workload, make_library, workload_params  # noqa: E402
from raybench.testing import ray_run  # noqa: E402
from reference_suts.dlrmv3_hstu.sut import DLRMv3HSTUSUT  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[3]
SMALL = ("max_requests_per_ts=4",)           # 10 inference timestamps x 4 = 40 requests


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload's ``tiny`` demo dataset, generated into a temporary cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYBENCH_CACHE", str(tmp_path_factory.mktemp("dlray")))
        wl = get_workload("dlrmv3")
        return Path(make_library(wl, workload_params(wl, {})).data.data_dir)


def test_cli_server_on_embedded_ray(tiny_dir: Path, tmp_path: Path) -> None:
    """`raybench run --workload dlrmv3 --scenario Server` on its own embedded Ray (auto: one
    embedding-shard actor and the global scheduler inside the replica) is VALID and exits 0.

    The settings make the verdict certain: 60 queries at p90 need no query over the bound for early
    stopping (44 would do), the bound is a generous 10 s and the harness may lag 1 s, so only an
    error, a 10 s query or a broken CLI can make it INVALID. (The demo's p99 at 80 ms needs ~460
    queries under the bound: at 20 QPS and ~30 queries it could never be VALID.)
    """
    sets = [f"workload.params.data_dir={tiny_dir}", "workload.params.max_requests_per_ts=4",
            "settings.server_target_qps=20", "settings.min_duration_ms=1500", "settings.min_query_count=60",
            "settings.server_target_latency_percentile=0.9", "settings.server_target_latency_ns=10000000000",
            "lateness_p99_ms=1000", "ray.shard_num_cpus=0", "ray.replica_num_cpus=0", "ray.start_lead_s=0.5"]
    cmd = [sys.executable, "-c", "from raybench.cli import main; main()", "run", "--workload", "dlrmv3",
           "--scenario", "Server", "--out", str(tmp_path), "--quiet", "--no-report"]
    for s in sets:
        cmd += ["--set", s]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]          # 0 = VALID
    assert "INVALID" not in proc.stdout
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    res = json.loads((run_dir / "result.json").read_text())
    assert (res["validity"], res["invalid_reasons"]) == ("VALID", [])
    assert (res["sut"], res["scenario"], res["num_errors"]) == ("dlrmv3_hstu", "Server", 0)
    # 60 Poisson arrivals at 20 QPS take ~3 s > 1.5 s: the query count, not the duration, binds.
    assert res["queries_issued"] == res["samples_issued"] == res["samples_completed"] == 60
    eff = res["effective"]
    assert (eff["target_latency_ns"], eff["target_latency_percentile"], eff["min_query_count"]) == (10**10, 0.9, 60)
    es = res["early_stopping"]["latency"]
    assert (es["met"], es["overlatency_count"], es["queries_needed"], es["min_queries_required"]) == (True, 0, 0, 44)
    assert res["constraints"] == {"min_duration_met": True, "min_queries_met": True, "perf_constraints_met": True,
                                  "early_stopping_met": True}


def test_ray_shards_match_local_table(ray_local, tiny_dir: Path) -> None:  # noqa: F811
    """3 row-wise shard actors give bitwise the predictions of one local table; a second SUT with
    the same run key shares the actors instead of creating new ones."""
    wl = {"data_dir": str(tiny_dir), "max_requests_per_ts": 4}
    ctx = SUTContext(workload="dlrmv3", scenario="Offline", mode="AccuracyOnly", workload_params=wl)
    base = {"config": "tiny", "streaming": False, "global_order": False}
    local = DLRMv3HSTUSUT({**base, "embedding_actors": 0, "n_shards": 1})
    remote = DLRMv3HSTUSUT({**base, "embedding_actors": 3, "run_id": "test-a"})
    again = DLRMv3HSTUSUT({**base, "embedding_actors": 3, "run_id": "test-a"})

    async def main() -> tuple[list, list]:
        for s in (local, remote, again):
            await s.start(ctx)
        idx = list(range(12))
        q = Query(id=0, indices=idx, samples=[local.library.get(i) for i in idx])
        return list(await local.issue(q)), list(await remote.issue(q))

    a, b = asyncio.run(main())
    assert all(r.error is None for r in a + b)
    assert [r.data for r in a] == [r.data for r in b]                 # bitwise equal payloads
    info = remote.info()
    shards = info["embedding_shards"]
    # 8192 rows of 32 float32: ceil(8192 / 3) = 2731 rows per shard, the last 2730.
    assert [(s["shard"], s["rows"], s["row_offset"], s["memory_bytes"]) for s in shards] == [
        (0, 2731, 0, 2731 * 128), (1, 2731, 2731, 2731 * 128), (2, 2730, 5462, 2730 * 128)]
    assert info["embedding_memory_bytes"] == 8192 * 32 * 4
    assert len({s["pid"] for s in shards} | {os.getpid()}) == 4        # three actor processes
    assert [s["pid"] for s in again.info()["embedding_shards"]] == [s["pid"] for s in shards]
    assert remote.embedding.stats["lookups"] == 2                        # warm-up + one batch
    assert local.info()["embedding_actors"] == 0 and local.info()["scheduler"] == "local"


def _order_rows(path: Path) -> list[dict[str, int | str]]:
    with path.open() as f:
        return [{k: (v if k == "client" else int(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def test_server_two_replicas_global_timestamp_order(ray_local, tiny_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """Server on Ray, 2 replicas, 2 load shards, 2 embedding actors: from the scheduler actor's
    own log (strict rule), no request of a timestamp starts before every request of the previous
    one ended, and plan position k served the streaming order's request k."""
    log = tmp_path / "order.csv"
    out, _ = ray_run(tmp_path / "run", "workload=dlrmv3", "sut=dlrmv3_hstu", "scenario=Server",
                     f"workload.params.data_dir={tiny_dir}", "workload.params.max_requests_per_ts=4",
                     "ray.replicas=2", "sut.params.n_shards=2", f"sut.params.order_log={log}",
                     "settings.server_target_qps=30", "settings.min_duration_ms=2000",
                     "settings.min_query_count=60", shards=2)
    m = out.metrics
    assert m.num_errors == 0 and m.samples_completed == m.samples_issued >= 60
    rows = _order_rows(log)
    assert len(rows) == m.samples_completed
    assert sorted(r["seq"] for r in rows) == list(range(len(rows)))     # one row per plan position
    assert all(r["index"] == r["seq"] % 40 for r in rows)                # issue order = streaming order
    assert len({r["client"] for r in rows}) == 2                         # both replicas, one order
    counts = 4                                                           # requests per phase
    phases = sorted({r["phase"] for r in rows})
    assert phases == list(range(phases[-1] + 1)) and len(phases) >= 15   # > 1 epoch of 10 ts
    for p in phases[1:]:
        prev = [r for r in rows if r["phase"] == p - 1]
        assert len(prev) == counts
        assert min(r["granted_ns"] for r in rows if r["phase"] == p) >= max(r["released_ns"] for r in prev)
    for r in rows:                                                       # slot -> timestamp map
        assert r["ts_idx"] == r["phase"] % 10 and r["granted_ns"] <= r["released_ns"]
    # system.json records each replica's SUT info: 8192 rows x 32 float32 in 2 shard actors of
    # 4096 rows (4096 * 128 B), the same two actors for both replicas; dense forward on CPU.
    system = json.loads((out.run_dir / "system.json").read_text())
    reps = system["sut_replicas"]
    assert [(r["replica"], r["name"]) for r in reps] == [(0, "dlrmv3_hstu"), (1, "dlrmv3_hstu")]
    for r in reps:
        info = r["sut_info"]
        assert [(s["shard"], s["rows"], s["memory_bytes"]) for s in info["embedding_shards"]] == [
            (0, 4096, 4096 * 128), (1, 4096, 4096 * 128)]
        assert (info["embedding_memory_bytes"], info["embedding_actors"], info["device"]) == (
            8192 * 32 * 4, 2, "cpu")
    pids = [[s["pid"] for s in r["sut_info"]["embedding_shards"]] for r in reps]
    assert pids[0] == pids[1] and len(set(pids[0])) == 2


def test_named_actor_dies_with_its_owner_and_is_recreated(ray_local) -> None:  # noqa: F811
    from raybench.ray.shared import get, host, in_ray, kill, named_actor
    from reference_suts.dlrmv3_hstu.scheduler import StreamingScheduler

    class Owner:    # a local class: pickled by value (this test module is not importable in workers)
        """Stands in for a SUT replica that creates a shared scheduler and uses it once."""

        def make(self, name: str) -> int:
            h = named_actor(name, StreamingScheduler, [2, 3], strict=True)
            get(h.claim_now.remote([0], "owner"))
            return get(h.stats.remote())["claimed"]

    assert in_ray() is False                                   # the test driver is no actor
    owner = host(Owner, {"num_cpus": 0}).remote()
    assert get(owner.make.remote("dlrmv3-test-stale")) == 1
    kill(owner)                                                # the "previous run" ends
    fresh = named_actor("dlrmv3-test-stale", StreamingScheduler, [2, 3])
    assert get(fresh.stats.remote())["claimed"] == 0           # not the old run's state
    assert get(fresh.slot.remote(4)).ts_idx == 1
    kill(fresh)
