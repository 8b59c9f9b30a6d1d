"""HSTU model paths, sharded lookups, streaming scheduler and the SUT on the tiny dataset."""

from __future__ import annotations

import asyncio
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
    assert [g.ts_idx for g in got] == [0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0]
    assert [g.index for g in got] == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 0, 1]
    assert [g.phase for g in got][-3:] == [2, 3, 3]
    with pytest.raises(ValueError, match="counts_per_ts"):
        StreamingScheduler([0, 0])


def test_scheduler_gates_concurrent_random_issues() -> None:
    counts = [5, 3, 7, 1, 4]
    sched = StreamingScheduler(counts)
    events: list[tuple[str, int]] = []
    rnd = random.Random(0)
    n = 2 * sum(counts) + 3                       # two epochs and a bit

    async def one() -> None:
        await asyncio.sleep(rnd.random() * 0.01)
        slot = await sched.acquire()
        events.append(("start", slot.phase))
        await asyncio.sleep(rnd.random() * 0.005)
        events.append(("end", slot.phase))
        await sched.release(slot)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(main())
    ended: dict[int, int] = {}
    quota = {p: counts[p % 5] for p in range(10)}
    for kind, phase in events:
        if kind == "start":
            assert all(ended.get(q, 0) == quota[q] for q in range(phase)), (phase, ended)
        else:
            ended[phase] = ended.get(phase, 0) + 1
    assert len(events) == 2 * n and sched.max_waiting > 0


def test_sut_streaming_order_and_accuracy(tiny_dir: Path) -> None:
    wl = {"data_dir": str(tiny_dir), "max_requests_per_ts": 6}
    sut = DLRMv3HSTUSUT({"config": "tiny", "n_shards": 2, "microbatch": 32, "uih_cache": True,
                         "max_batch": 4})
    ctx = SUTContext(workload="dlrmv3", scenario="Server", mode="AccuracyOnly", workload_params=wl)
    total = 60
    order = list(range(total))
    random.Random(1).shuffle(order)

    async def main() -> list:
        await sut.start(ctx)
        qs = [Query(id=k, indices=order[2 * k:2 * k + 2], samples=[None, None])
              for k in range(total // 2)]
        out = await asyncio.gather(*(sut.issue(q) for q in qs))
        await sut.stop()
        return [(q.indices, r) for q, r in zip(qs, out, strict=True)]

    results = asyncio.run(main())
    served_ts = [sut.library.key(i)[0] for _, i in sut.served]
    assert served_ts == sorted(served_ts)                 # timestamp by timestamp
    assert sorted(i for _, i in sut.served) == list(range(total))
    entries = [(qi, r.data) for idx, rs in results for qi, r in zip(idx, rs, strict=True)]
    assert all(r.error is None for _, rs in results for r in rs)
    keys = {decode_payload(d)[:2] for _, d in entries}
    assert len(keys) == total
    res = score(entries, sut.library, {})
    assert res.metrics["num_requests"] == 60 and res.metrics["coverage"] == 1.0
    assert res.passed is False                            # random init vs MLPerf targets
    assert "metric/lifetime_gauc/rating:" in res.accuracy_txt


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
