"""Generator and sample library on the tiny preset (exact numbers are deterministic in the seed)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raybench.core.spec import ParamsError
from raybench.registry import get_workload, make_library, workload_params
from workloads.dlrmv3.dataset import DLRMv3Data, DLRMv3Library, load_library
from workloads.dlrmv3.generator import (
    KIND_BASE,
    KIND_EVAL,
    KIND_INFER,
    KIND_TRAIN,
    generate,
    generate_shard,
    item_quality,
    preset,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dlrmv3") / "tiny"
    return generate(preset("tiny"), out)


@pytest.fixture(scope="module")
def data(tiny_dir: Path) -> DLRMv3Data:
    return DLRMv3Data(tiny_dir)


def _digest(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_deterministic_and_seed_sensitive(tiny_dir: Path, tmp_path: Path) -> None:
    again = generate(preset("tiny"), tmp_path / "again")
    assert _digest(again) == _digest(tiny_dir)
    p = preset("tiny", seed=7)
    a = generate_shard(p, 0, item_quality(p))
    b = generate_shard(preset("tiny"), 0, item_quality(preset("tiny")))
    assert not np.array_equal(a["uih_ids"][:100], b["uih_ids"][:100])


def test_cli_writes_dataset(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "workloads.dlrmv3.generator", "--preset", "tiny",
                    "--out", str(tmp_path / "cli")], cwd=ROOT, check=True, capture_output=True)
    assert (tmp_path / "cli" / "meta.json").exists()
    assert sorted(p.name for p in (tmp_path / "cli").glob("part-*.npz")) == [
        "part-00000.npz", "part-00001.npz"]


def test_slot_structure_and_request_rate(data: DLRMv3Data) -> None:
    p = data.params
    n_users = p.num_users
    kinds = data.slot_kind
    assert (kinds == KIND_BASE).sum() == n_users
    assert (kinds == KIND_EVAL).sum() == n_users
    n_train = (kinds == KIND_TRAIN).sum()
    n_infer = (kinds == KIND_INFER).sum()
    rate = (n_train + n_infer) / (n_users * p.num_timestamps)
    assert abs(rate - 0.7) < 0.01                    # Bernoulli(0.7) over 51,200 draws
    # every inference slot has exactly num_inference_candidates candidates
    clen = np.diff(data.cand_offsets)
    assert set(clen[kinds == KIND_INFER].tolist()) == {p.num_inference_candidates}
    assert set(clen[kinds == KIND_TRAIN].tolist()) == {p.num_eval_candidates}


def test_categories_per_user_and_even_partition(tiny_dir: Path) -> None:
    p = preset("tiny")
    with np.load(tiny_dir / "part-00000.npz") as z:
        cats, ids, off, slot_user = z["user_categories"], z["uih_ids"], z["uih_offsets"], z["slot_user"]
    assert cats.shape == (256, 4)
    assert all(len(set(row)) == 4 for row in cats.tolist())
    tok_user = np.repeat(slot_user, np.diff(off))
    item_cat = ids // p.items_per_category
    # every item a user sees is in one of that user's 4 categories
    assert np.all((item_cat[:, None] == cats[tok_user]).any(axis=1))
    # categories are drawn uniformly: each of 16 holds ~ 1/16 of the user-category picks
    share = np.bincount(cats.ravel(), minlength=16) / cats.size
    assert share.min() > 0.03 and share.max() < 0.10


def test_dirichlet_rich_get_richer(data: DLRMv3Data) -> None:
    """A user's most-visited category takes more than under uniform (1/4 each) draws of the
    same lengths: counts feed back into the category probabilities."""
    p = data.params
    ends = np.append(data.user_start[1:], data.stream_ids.size)
    top, sim = [], []
    rng = np.random.default_rng(0)
    for a, b in zip(data.user_start, ends, strict=True):
        c = np.bincount(data.stream_ids[a:b] // p.items_per_category, minlength=p.num_categories)
        top.append(c.max() / c.sum())
        sim.append(rng.multinomial(c.sum(), [0.25] * 4).max() / c.sum())
    assert np.mean(top) > np.mean(sim) + 0.01       # 0.298 vs 0.279 with seed 1001


def test_reachable_ids_grow_linearly(data: DLRMv3Data) -> None:
    p = data.params
    ipc = p.items_per_category
    for t in (0, 9, 49, 89):
        slots = data.slots_of(KIND_TRAIN, t)
        ids = np.concatenate([data.cand_ids[data.cand_offsets[s]:data.cand_offsets[s + 1]]
                              for s in slots])
        end = int(ipc * (t + 1) / p.num_timestamps)
        assert (ids % ipc).max() < end
        assert (ids % ipc).max() >= end - 2             # the prefix is actually reached
    s99 = data.slots_of(KIND_INFER, 99)
    ids = data.cand_ids[data.cand_offsets[s99[0]]:data.cand_offsets[s99[0] + 1]]
    assert (ids % ipc).max() < ipc


def test_ratings_and_label_rate(tiny_dir: Path, data: DLRMv3Data) -> None:
    q = np.load(tiny_dir / "item_quality.npy")
    assert q.size == 8192 and set(np.unique(q).tolist()) == {1, 2, 3, 4, 5}
    freq = np.bincount(q, minlength=6)[1:][::-1] / q.size     # 5..1
    assert np.allclose(freq, [0.2, 0.25, 0.25, 0.2, 0.1], atol=0.02)
    # rating = (profile + quality) / 2, profile in [1, 5]
    r, ids = data.cand_ratings, data.cand_ids
    profile = 2 * r - q[ids]
    assert profile.min() >= 1.0 - 1e-5 and profile.max() <= 5.0 + 1e-5
    label_rate = float((r >= 3.5).mean())
    assert 0.40 < label_rate < 0.47


def test_library_history_is_causal(tiny_dir: Path) -> None:
    lib = DLRMv3Library(DLRMv3Data(tiny_dir))
    assert lib.total_count == sum(lib.counts_per_ts)
    assert len(lib.counts_per_ts) == 10
    prev_ts = -1
    for i in range(lib.total_count):
        ts_idx, _ = lib.key(i)
        assert ts_idx >= prev_ts                   # timestamp-major order
        prev_ts = ts_idx
    s = lib.get(lib.ts_offsets[5])
    assert s["ts"] == 95 and s["ts_idx"] == 5
    assert s["uih_ts"].max() < 95 and s["uih_ts"][0] == -1
    assert np.all(np.diff(s["uih_ts"]) >= 0)
    assert s["cand_ids"].size == 64 and s["labels"].dtype == np.float32
    assert lib.index_of(*lib.key(123)) == 123


def test_load_library_generates_demo_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    lib = load_library({"preset": "tiny", "max_requests_per_ts": 5})
    assert lib.counts_per_ts == [5] * 10 and lib.total_count == 50
    (d,) = list(tmp_path.iterdir())
    assert d.name == "dlrmv3-demo-1-tiny"
    with pytest.raises(ValueError, match="data_dir"):
        load_library({"data_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="preset"):
        load_library({"preset": "reference"})


def test_issue_order_is_the_streaming_order_with_repeats(tiny_dir: Path) -> None:
    """One epoch of the reference StreamingQuerySampler: timestamp by timestamp, each timestamp's
    requests ``repeats`` times (slot j of t serves ``ts_offsets[t] + j % counts[t]``)."""
    one = DLRMv3Library(DLRMv3Data(tiny_dir), max_requests_per_ts=3)
    assert one.repeats == 1 and one.issue_order().tolist() == list(range(30))
    wl = get_workload("dlrmv3")
    lib = make_library(wl, workload_params(wl, {"data_dir": str(tiny_dir), "max_requests_per_ts": 3, "repeats": 2}))
    order = lib.issue_order()
    assert lib.repeats == 2 and order.size == 60
    assert order[:12].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]
    expected = [int(lib.ts_offsets[t]) + j % c for t, c in enumerate(lib.counts_per_ts) for j in range(2 * c)]
    assert order.tolist() == expected
    assert [lib.key(int(i))[0] for i in order] == sorted(lib.key(int(i))[0] for i in order)
    with pytest.raises(ParamsError, match=r"workload\.params\.repeats"):
        workload_params(wl, {"repeats": 0})
