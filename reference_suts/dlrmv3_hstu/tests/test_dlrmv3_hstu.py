"""HSTU model paths, sharded lookups, streaming scheduler and the SUT on the tiny dataset."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from raybench.core.protocols import Query, SUTContext  # noqa: E402
from raybench.core.spec import load_object  # noqa: E402
from raybench.registry import get_workload, make_library, workload_params  # noqa: E402
from reference_suts.dlrmv3_hstu.engine import InferenceEngine, UIHCache  # noqa: E402
from reference_suts.dlrmv3_hstu.model import HSTURanker, config_for, make_request  # noqa: E402
from reference_suts.dlrmv3_hstu.scheduler import StreamingScheduler  # noqa: E402
from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding  # noqa: E402
from reference_suts.dlrmv3_hstu.sut import DLRMv3HSTUSUT  # noqa: E402
from workloads.dlrmv3.payload import decode_payload  # noqa: E402

DLRMv3Library = Any  # the workload's library, built through the registry (SUTs never import the dataset)
score = load_object(get_workload("dlrmv3").accuracy)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload's ``tiny`` demo dataset, generated into a temporary cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYBENCH_CACHE", str(tmp_path_factory.mktemp("dl")))
        wl = get_workload("dlrmv3")
        return Path(make_library(wl, workload_params(wl, {})).data.data_dir)


@pytest.fixture(scope="module")
def lib(tiny_dir: Path) -> DLRMv3Library:
    wl = get_workload("dlrmv3")
    return make_library(wl, workload_params(wl, {"data_dir": str(tiny_dir)}))




@pytest.fixture(scope="module")
def ranker() -> HSTURanker:
    torch.set_num_threads(1)
    return HSTURanker(config_for("tiny")).eval()


def _reqs(lib: DLRMv3Library, idx: list[int]) -> list:
    cfg = config_for("tiny")
    return [make_request(lib.get(i), cfg) for i in idx]


def test_sharded_lookup_bitwise_equal(lib: DLRMv3Library, ranker: HSTURanker) -> None:
    table = ranker.item_emb.weight.detach()
    one = ShardedEmbedding.from_table(table, 1)
    five = ShardedEmbedding.from_table(table, 5)          # 8192 rows -> 1639 per shard
    ids = torch.tensor([0, 8191, 1638, 1639, 1639, 5, 0])
    assert torch.equal(five(ids), table[ids])
    assert five.stats["unique_ids"] == 5
    reqs = _reqs(lib, list(range(8)))
    p1 = InferenceEngine(ranker.dense, one.lookup_many).predict(reqs)
    p5 = InferenceEngine(ranker.dense, five.lookup_many).predict(reqs)
    assert all(torch.equal(a, b) for a, b in zip(p1, p5, strict=True))
    with pytest.raises(IndexError):
        five(torch.tensor([8192]))


def test_training_forward_matches_inference(lib: DLRMv3Library, ranker: HSTURanker) -> None:
    reqs = _reqs(lib, [0, 1, 2])
    emb = ShardedEmbedding.from_table(ranker.item_emb.weight.detach(), 1)
    base = InferenceEngine(ranker.dense, emb.lookup_many).predict(reqs)
    with torch.no_grad():
        logits, valid = ranker.batch_logits(reqs)                 # padded batch of 3
    for i, p in enumerate(base):
        assert torch.allclose(torch.sigmoid(logits[i][valid[i]]), p, atol=1e-6)


def test_candidates_are_independent(lib: DLRMv3Library, ranker: HSTURanker) -> None:
    """A candidate's score does not depend on the other candidates (the mask)."""
    (r,) = _reqs(lib, [3])
    emb = ShardedEmbedding.from_table(ranker.item_emb.weight.detach(), 1)
    eng = InferenceEngine(ranker.dense, emb.lookup_many)
    full = eng.predict([r])[0]
    r.cand_ids = r.cand_ids[10:20]
    assert torch.allclose(eng.predict([r])[0], full[10:20], atol=1e-6)


def test_mfalcon_equals_baseline(lib: DLRMv3Library, ranker: HSTURanker) -> None:
    reqs = _reqs(lib, list(range(6)))
    emb = ShardedEmbedding.from_table(ranker.item_emb.weight.detach(), 2)
    base = InferenceEngine(ranker.dense, emb.lookup_many).predict(reqs)
    for m in (1, 7, 64):
        got = InferenceEngine(ranker.dense, emb.lookup_many, microbatch=m).predict(reqs)
        assert max(float((a - b).abs().max()) for a, b in zip(base, got, strict=True)) < 1e-5


def test_uih_cache_equals_baseline_and_invalidates(lib: DLRMv3Library, ranker: HSTURanker) -> None:
    user = lib.get(0)["user"]
    idx = [i for i in range(lib.total_count) if lib.get(i)["user"] == user]
    assert len(idx) >= 5
    emb = ShardedEmbedding.from_table(ranker.item_emb.weight.detach(), 1)
    base_eng = InferenceEngine(ranker.dense, emb.lookup_many)
    cache = UIHCache()
    eng = InferenceEngine(ranker.dense, emb.lookup_many, microbatch=16, uih_cache=cache)
    order = idx + [idx[0]]                        # replay of an earlier timestamp at the end
    for i in order:
        (r,) = _reqs(lib, [i])
        assert float((base_eng.predict([r])[0] - eng.predict([r])[0]).abs().max()) < 1e-5
    assert cache.stats["misses"] == 1
    assert cache.stats["hits"] == len(idx) - 1
    assert cache.stats["invalidated"] == 1        # the shorter (earlier) history is not a prefix
    assert len(cache) == 1
    small = UIHCache(max_bytes=1)                 # nothing fits: never stored
    eng2 = InferenceEngine(ranker.dense, emb.lookup_many, uih_cache=small)
    eng2.predict(_reqs(lib, idx[:2]))
    assert len(small) == 0 and small.stats["misses"] == 2


def test_scheduler_slots_and_epochs() -> None:
    s = StreamingScheduler([2, 0, 3], repeats=2)
    got = [s.slot(k) for k in range(12)]
    assert [g.seq for g in got] == list(range(12))
    assert [g.ts_idx for g in got] == [0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0]
    assert [g.index for g in got] == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 0, 1]
    assert [g.phase for g in got][-3:] == [2, 3, 3]
    with pytest.raises(ValueError, match="counts_per_ts"):
        StreamingScheduler([0, 0])
    with pytest.raises(ValueError, match="plan position must be >= 0, got -1"):
        s.slot(-1)


def _run_random_claims(sched: StreamingScheduler, positions: list[int], seed: int) -> list[tuple[str, int, int]]:
    """Claim each position (one query each) after a random delay, serve it for a random time and
    release it; returns the ``(event, phase, position)`` sequence (claim, start, end)."""
    events: list[tuple[str, int, int]] = []
    rnd = random.Random(seed)
    delays = {p: rnd.random() * 0.01 for p in positions}
    work = {p: rnd.random() * 0.005 for p in positions}

    async def one(pos: int) -> None:
        await asyncio.sleep(delays[pos])
        # claim registers the position before its first suspension and returns right after the
        # grant check that let it through: both events are recorded in the step where they happen.
        events.append(("claim", sched.slot(pos).phase, pos))
        (slot,) = await sched.claim([pos], "test")
        events.append(("start", slot.phase, pos))
        await asyncio.sleep(work[pos])
        events.append(("end", slot.phase, pos))
        await sched.release_many([slot])

    async def main() -> None:
        await asyncio.gather(*(one(p) for p in positions))

    asyncio.run(main())
    return events


def test_strict_rule_gates_random_arrival_order() -> None:
    """Shared-actor rule: positions arrive in any order; a phase starts only after every position of
    every earlier phase (its full quota) was released."""
    counts = [5, 3, 7, 1, 4]
    sched = StreamingScheduler(counts)
    n = 2 * sum(counts) + 3                       # two epochs and a bit
    positions = list(range(n))
    random.Random(1).shuffle(positions)
    events = _run_random_claims(sched, positions, 0)
    ended: dict[int, int] = {}
    quota = {p: counts[p % 5] for p in range(11)}
    for kind, phase, _ in events:
        if kind == "start":
            assert all(ended.get(q, 0) == quota[q] for q in range(phase)), (phase, ended)
        elif kind == "end":
            ended[phase] = ended.get(phase, 0) + 1
    assert len(events) == 3 * n and sched.max_waiting > 0
    assert sched.stats()["claimed"] == sched.stats()["released"] == n and sched.frontier == 10


def test_local_rule_waits_only_for_claimed_earlier_phases() -> None:
    """Local rule: a phase-p position starts only when no claimed, unreleased position of an earlier
    phase is outstanding in this instance; positions it never sees (other shards') are not waited
    for, so any subset of the plan completes."""
    counts = [5, 3, 7, 1, 4]
    sched = StreamingScheduler(counts, strict=False)
    positions = [p for p in range(2 * sum(counts)) if p % 3]     # this shard's part of the plan
    random.Random(2).shuffle(positions)
    events = _run_random_claims(sched, positions, 3)
    outstanding: dict[int, int] = {}                             # position -> phase
    for kind, phase, pos in events:
        if kind == "claim":
            outstanding[pos] = phase
        elif kind == "start":
            assert all(q >= phase for q in outstanding.values()), (pos, phase, outstanding)
        else:
            del outstanding[pos]
    assert len(events) == 3 * len(positions) and sched.max_waiting > 0
    assert sched.stats()["released"] == len(positions)


def test_local_rule_position_alone_runs_and_claimed_earlier_ones_gate_it() -> None:
    async def main() -> None:
        sched = StreamingScheduler([2, 2], strict=False)
        (s3,) = await asyncio.wait_for(sched.claim([3]), 1)      # nothing earlier claimed: runs
        await sched.release_many([s3])
        s0, s1 = await sched.claim([0, 1])
        late = asyncio.ensure_future(sched.claim([3]))
        await asyncio.sleep(0.01)
        assert not late.done()
        await sched.release_many([s0])
        await asyncio.sleep(0.01)
        assert not late.done()
        await sched.release_many([s1])
        (again,) = await asyncio.wait_for(late, 1)
        assert (again.seq, again.phase, again.index) == (3, 1, 3)
        await sched.release_many([again])
        # A claim cancelled while waiting (the run ends) releases its positions itself.
        (s4,) = await sched.claim([4])                          # epoch 1, phase 2
        stuck = asyncio.ensure_future(sched.claim([6, 7]))      # phase 3 waits for 4
        await asyncio.sleep(0.01)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert sched.stats()["claimed"] == 7 and sched.stats()["released"] == 6
        await sched.release_many([s4])
        assert sched.ready(sched.slot(8)) and sched.stats()["released"] == 7

    asyncio.run(main())


def _sut_ctx(tiny_dir: Path, mode: str = "AccuracyOnly", **wl: Any) -> SUTContext:
    return SUTContext(workload="dlrmv3", scenario="Server", mode=mode,
                      workload_params={"data_dir": str(tiny_dir), **wl})


def _query(lib: DLRMv3Library, qid: int, indices: list[int]) -> Query:
    """What the harness sends: the plan position of the first sample and the loaded samples."""
    return Query(id=qid, indices=indices, samples=[lib.get(i) for i in indices])


def _strict(sut: DLRMv3HSTUSUT, log: Path | None = None) -> StreamingScheduler:
    """Give a started SUT the strict (shared-actor) rule, in-process: the object the actor hosts."""
    sut.scheduler.close()
    sut.scheduler = StreamingScheduler(sut.library.counts_per_ts, 1, str(log) if log else None, strict=True)
    return sut.scheduler


def _order_rows(path: Path) -> dict[int, dict[str, int]]:
    with path.open() as f:
        return {int(r["seq"]): {k: int(v) for k, v in r.items() if k != "client"} for r in csv.DictReader(f)}


@pytest.mark.parametrize("rule", ["local", "strict"])
def test_sut_streaming_order_and_accuracy(tiny_dir: Path, rule: str) -> None:
    """60 positions in queries of 4 consecutive positions (some span two timestamps), all in
    flight at once: the SUT serves what each query carries, timestamp by timestamp. Local rule:
    queries arrive in plan order (one load shard); strict rule: in a shuffled order."""
    sut = DLRMv3HSTUSUT({"config": "tiny", "n_shards": 2, "microbatch": 32, "uih_cache": True,
                         "max_batch": 4})
    total = 60
    order = list(range(0, total, 4))
    if rule == "strict":
        random.Random(1).shuffle(order)

    async def main() -> list:
        await sut.start(_sut_ctx(tiny_dir, max_requests_per_ts=6))
        if rule == "strict":
            _strict(sut)
        qs = [_query(sut.library, k, list(range(k, k + 4))) for k in order]
        out = await asyncio.gather(*(sut.issue(q) for q in qs))
        await sut.stop()
        return [(q.indices, r) for q, r in zip(qs, out, strict=True)]

    results = asyncio.run(main())
    assert all(r.error is None for _, rs in results for r in rs)
    served_ts = [sut.library.key(i)[0] for _, i in sut.served]
    assert served_ts == sorted(served_ts)                 # timestamp by timestamp
    assert sorted(sut.served) == [(k, k) for k in range(total)]   # position k serves index k
    entries = [(qi, r.data) for idx, rs in results for qi, r in zip(idx, rs, strict=True)]
    assert all(decode_payload(d)[:2] == sut.library.key(qi) for qi, d in entries)
    res = score(entries, sut.library, {})
    assert res.metrics["num_requests"] == 60 and res.metrics["coverage"] == 1.0
    assert res.passed is False                            # random init vs MLPerf targets
    assert "metric/lifetime_gauc/rating:" in res.accuracy_txt


def test_sut_out_of_order_position_waits_for_earlier_timestamp(tiny_dir: Path, tmp_path: Path) -> None:
    """counts [2, 2] (strict rule): position 3 (timestamp 1) arrives first and waits until positions
    0 and 1 (timestamp 0) are released; 2 (timestamp 1) does not hold it back."""
    sut = DLRMv3HSTUSUT({"config": "tiny"})
    log = tmp_path / "order.csv"

    async def main() -> list:
        await sut.start(_sut_ctx(tiny_dir, max_requests_per_ts=2))
        sched = _strict(sut, log)
        lib = sut.library
        first = asyncio.ensure_future(sut.issue(_query(lib, 3, [3])))
        await asyncio.sleep(0.2)
        assert not first.done() and sched.stats()["claimed"] == 1 and sched.max_waiting == 1
        rest = await asyncio.gather(*(sut.issue(_query(lib, k, [k])) for k in (0, 1, 2)))
        out = [await first, *rest]
        await sut.stop()
        return out

    out = asyncio.run(main())
    assert all(r.error is None for rs in out for r in rs)
    pos = [p for p, _ in sut.served]
    assert set(pos[:2]) == {0, 1} and set(pos[2:]) == {2, 3}
    rows = _order_rows(log)
    assert sorted(rows) == [0, 1, 2, 3] and [rows[k]["phase"] for k in range(4)] == [0, 0, 1, 1]
    assert rows[3]["granted_ns"] >= max(rows[0]["released_ns"], rows[1]["released_ns"])


@pytest.mark.parametrize("rule", ["local", "strict"])
def test_sut_answers_a_sample_the_order_does_not_serve_with_an_error(tiny_dir: Path, rule: str) -> None:
    """A query carrying a sample that is not the streaming order's at its position gets an error
    naming both; the position is still released (the next timestamp is not blocked)."""
    sut = DLRMv3HSTUSUT({"config": "tiny"})

    async def main() -> list:
        await sut.start(_sut_ctx(tiny_dir, max_requests_per_ts=2))
        if rule == "strict":
            _strict(sut)
        lib = sut.library
        qs = [_query(lib, 0, [1]), _query(lib, 1, [1]), _query(lib, 2, [2, 9]), _query(lib, 4, [4])]
        out = await asyncio.wait_for(asyncio.gather(*(sut.issue(q) for q in qs)), 30)
        await sut.stop()
        return out

    (bad,), (ok1,), (ok2, bad2), (ok4,) = asyncio.run(main())
    assert bad.error == ("dlrmv3_hstu: plan position 0 carries sample 1 but the streaming order serves sample 0 "
                         "there (workload and SUT disagree on the issue order)")
    assert bad2.error is not None and "plan position 3 carries sample 9" in bad2.error
    assert all(r.error is None and r.data for r in (ok1, ok2, ok4))
    assert sorted(sut.served) == [(1, 1), (2, 2), (4, 4)]


def test_sut_repeats_come_from_the_workload(tiny_dir: Path) -> None:
    """Performance runs serve the workload's ``repeats``: position k carries ``issue_order[k % len]``
    (every request of a timestamp twice); the SUT no longer has the param."""
    sut = DLRMv3HSTUSUT({"config": "tiny"})

    async def main() -> list:
        await sut.start(_sut_ctx(tiny_dir, "PerformanceOnly", max_requests_per_ts=2, repeats=2))
        order = sut.library.issue_order()
        out = await asyncio.gather(*(sut.issue(_query(sut.library, k, [int(order[k % order.size])]))
                                     for k in range(45)))
        await sut.stop()
        return [out, order]

    out, order = asyncio.run(main())
    assert all(r.error is None for rs in out for r in rs)
    assert order[:8].tolist() == [0, 1, 0, 1, 2, 3, 2, 3] and order.size == 40
    assert sut.served == [(k, int(order[k % 40])) for k in range(45)]
    with pytest.raises(ValueError, match=r"sut\.params\.repeats: unknown field"):
        DLRMv3HSTUSUT({"repeats": 2})


def test_inprocess_server_accuracy_run_issues_the_streaming_order(tiny_dir: Path, tmp_path: Path) -> None:
    """A real in-process Server run in accuracy mode (workload ``repeats=2``): the accuracy log,
    sorted by seq_id, has every request once in streaming order (the library's issue order by
    first appearance), and every payload is the request its qsl_idx names."""
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=dlrmv3", "sut=dlrmv3_hstu", "scenario=Server", "mode=AccuracyOnly",
                                 f"out={tmp_path}", f"workload.params.data_dir={tiny_dir}",
                                 "workload.params.max_requests_per_ts=3", "workload.params.repeats=2",
                                 "settings.server_target_qps=200"])
    out = run_benchmark(cfg, InProcessExecutor())
    assert out.metrics.num_errors == 0
    log = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    log.sort(key=lambda e: e["seq_id"])
    wl = get_workload("dlrmv3")
    lib = make_library(wl, workload_params(wl, {"data_dir": str(tiny_dir), "max_requests_per_ts": 3, "repeats": 2}))
    order = lib.issue_order()
    _, first = np.unique(order, return_index=True)
    assert order.size == 60 and order[np.sort(first)].tolist() == list(range(30))
    assert [e["seq_id"] for e in log] == list(range(30))
    assert [e["qsl_idx"] for e in log] == order[np.sort(first)].tolist()
    for e in log:
        assert decode_payload(bytes.fromhex(e["data"]))[:2] == lib.key(e["qsl_idx"])


def test_checkpoint_mismatch_is_a_clear_error(tmp_path: Path, lib: DLRMv3Library) -> None:
    from reference_suts.dlrmv3_hstu.sut import build_engine

    r = HSTURanker(config_for("tiny", items_per_category=100))
    torch.save({"config": r.cfg.to_dict(), "dense": r.dense.state_dict(),
                "item_table": r.item_emb.weight.detach()}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="items_per_category"):
        build_engine({"checkpoint": str(tmp_path / "m.pt")}, lib.data.params)   # the tiny dataset's
    np.testing.assert_equal(lib.data.params.items_per_category, 512)


def test_device_param_resolves_and_rejects_missing_cuda(lib: DLRMv3Library) -> None:
    """Resolution on any machine; the missing-CUDA rejection only where CUDA is absent, the
    device-index check only where it is present."""
    from reference_suts.dlrmv3_hstu.sut import resolve_device

    has_cuda = torch.cuda.is_available()
    auto = torch.device("cuda") if has_cuda else torch.device("cpu")
    assert resolve_device("auto") == auto == resolve_device(None) == resolve_device(" AUTO ")
    assert resolve_device("cpu") == torch.device("cpu")
    rejected = [("tpu", "is not one of auto, cpu, cuda, cuda:N"), ("cuda:x", "is not one of auto, cpu, cuda, cuda:N")]
    if has_cuda:
        n = torch.cuda.device_count()
        assert resolve_device("cuda") == torch.device("cuda")
        assert resolve_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)
        rejected.append((f"cuda:{n}", f"but only {n} CUDA device(s) are visible"))
    else:
        rejected += [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available")]
    for bad, why in rejected:
        with pytest.raises(ValueError, match=r"sut\.params\.device=") as exc:
            resolve_device(bad)
        assert why in str(exc.value) and "\n" not in str(exc.value)
    if not has_cuda:
        with pytest.raises(ValueError, match=r"sut\.params\.device='cuda'"):
            build_engine_tiny({"device": "cuda"}, lib)


def test_device_param_with_two_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch of ``resolve_device`` on any machine: two GPUs made visible by patching."""
    from reference_suts.dlrmv3_hstu.sut import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda") == resolve_device(None) == resolve_device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^dlrmv3_hstu: sut\.params\.device='cuda:2' but only 2 CUDA device\(s\) "
                                         r"are visible$"):
        resolve_device("cuda:2")


def build_engine_tiny(params: dict, lib: DLRMv3Library) -> tuple:
    from reference_suts.dlrmv3_hstu.sut import build_engine

    return build_engine({"config": "tiny", **params}, lib.data.params)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_predictions_match_cpu(lib: DLRMv3Library) -> None:
    """Dense forward on CUDA (lookups on CPU) agrees with CPU within 1e-4, on the baseline and
    the M-FALCON + UIH-cache paths (the cache path is run twice: its second pass reuses K/V)."""
    reqs = _reqs(lib, list(range(8)))
    for extra in ({}, {"microbatch": 16, "uih_cache": True}):
        _, _, cpu = build_engine_tiny({**extra, "device": "cpu"}, lib)
        _, _, gpu = build_engine_tiny({**extra, "device": "cuda"}, lib)
        assert gpu.device.type == "cuda" and next(gpu.dense.parameters()).is_cuda
        for _ in range(2):
            a, b = cpu.predict(reqs), gpu.predict(reqs)
            assert all(p.device.type == "cpu" for p in b)
            assert max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True)) < 1e-4
def test_inprocess_offline_two_shards_local_rule_completes(tiny_dir: Path, tmp_path: Path) -> None:
    """Offline performance run on 2 in-process shards (one SUT instance each, local rule), workload
    ``repeats=2``: shard 1 starts mid-order without waiting for shard 0's positions (the strict rule
    would deadlock there), batches span timestamps, and every sample is served without error."""
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=dlrmv3", "sut=dlrmv3_hstu", "scenario=Offline", f"out={tmp_path}",
                                 f"workload.params.data_dir={tiny_dir}", "workload.params.max_requests_per_ts=2",
                                 "workload.params.repeats=2", "settings.offline_expected_qps=100",
                                 "settings.min_duration_ms=500", "sut.params.max_batch=3"])
    out = run_benchmark(cfg, InProcessExecutor(shards=2))
    assert out.metrics.num_errors == 0
    assert out.metrics.samples_issued == out.metrics.samples_completed == 55
