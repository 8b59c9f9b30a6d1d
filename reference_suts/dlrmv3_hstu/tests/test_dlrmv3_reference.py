"""The reference DLRMv3 model: state-dict keys, the on-disk checkpoint, streamed tables, exact
M-FALCON / cross-request cache paths, and the ``dlrmv3_reference`` SUT in-process."""

from __future__ import annotations

import asyncio
import json
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from raybench.core.protocols import Query, SUTContext  # noqa: E402
from raybench.core.spec import ParamsError, validate_params  # noqa: E402
from raybench.registry import get_sut, get_workload, make_library, workload_params  # noqa: E402
from reference_suts.dlrmv3_hstu.params import DLRMv3ReferenceParams, ReferenceModelParams  # noqa: E402
from reference_suts.dlrmv3_hstu.reference_checkpoint import (  # noqa: E402
    DENSE_FILE,
    checkpoint_files,
    dense_state_dict,
    full_state_dict,
    read_table_rows,
    table_shape,
)
from reference_suts.dlrmv3_hstu.reference_engine import RefCache, ReferenceEngine  # noqa: E402
from reference_suts.dlrmv3_hstu.reference_model import (  # noqa: E402
    REFERENCE,
    TINY,
    ReferenceConfig,
    ReferenceDlrmHSTU,
    attention_mask,
    make_ref_request,
    position_ids,
    reference_config,
    time_buckets,
)
from reference_suts.dlrmv3_hstu.reference_sut import DLRMv3ReferenceSUT, build_reference_engine  # noqa: E402
from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding  # noqa: E402
from scripts.make_dlrmv3_reference_checkpoint import main as make_main  # noqa: E402
from workloads.dlrmv3.payload import decode_payload  # noqa: E402

T = "_hstu_transducer."
P = T + "_input_preprocessor."


def _mlp(prefix: str, d_in: int, hid: int, d_out: int, norm: bool = True) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.0.weight": (hid, d_in), f"{prefix}.0.bias": (hid,), f"{prefix}.1.weight": (hid,),
            f"{prefix}.1.bias": (hid,), f"{prefix}.2.weight": (d_out, hid), f"{prefix}.2.bias": (d_out,)}
    if norm:
        keys |= {f"{prefix}.3.weight": (d_out,), f"{prefix}.3.bias": (d_out,)}
    return keys


def expected_keys(c: ReferenceConfig) -> dict[str, tuple[int, ...]]:
    """The reference ``DlrmHSTU`` state dict for config ``c``, written out from its module tree
    (``dlrm_hstu.py``, ``preprocessors.py``, ``action_encoder.py``, ``stu.py``,
    ``positional_encoder.py``, ``postprocessors.py``, ``multitask_module.py``)."""
    d, td, h, dv, dq = c.transducer_dim, c.table_dim, c.num_heads, c.attn_linear_dim, c.attn_qk_dim
    keys = {f"_embedding_collection.embeddings.{n}.weight": (r, td) for n, r in
            (("item_id", c.item_rows), ("item_category_id", c.category_rows), ("user_id", c.user_rows))}
    keys |= _mlp("_multitask_module._prediction_module", d, 512 if c.mlp_hidden == 512 else c.mlp_hidden, 1,
                 norm=False)
    for i in range(c.num_layers):
        s = f"{T}_stu_module._stu_layers.{i}."
        keys |= {s + "_uvqk_weight": (d, (2 * dv + 2 * dq) * h), s + "_uvqk_beta": ((2 * dv + 2 * dq) * h,),
                 s + "_input_norm_weight": (d,), s + "_input_norm_bias": (d,), s + "_output_weight": (3 * dv * h, d),
                 s + "_output_norm_weight": (dv * h,), s + "_output_norm_bias": (dv * h,)}
    keys |= {P + "_batched_contextual_linear_weights": (1, td, d), P + "_batched_contextual_linear_bias": (1, d)}
    keys |= _mlp(P + "_content_embedding_mlp", td, c.preprocessor_hidden_dim, d)
    keys |= _mlp(P + "_additional_embedding_mlp", td, c.preprocessor_hidden_dim, d)
    keys |= {P + "_action_encoder._action_embedding_table": (5, 8),
             P + "_action_encoder._target_action_embedding_table": (1, 40),
             P + "_action_encoder._combined_action_weights": (5,)}
    keys |= _mlp(P + "_action_embedding_mlp", 40, c.preprocessor_hidden_dim, d)
    o = T + "_output_postprocessor."
    keys |= {o + "_period_units": (1, 2), o + "_units_per_period": (1, 2), o + "_layer_norm.weight": (d,),
             o + "_layer_norm.bias": (d,), o + "_time_feature_combiner.weight": (d, d + 4),
             o + "_time_feature_combiner.bias": (d,)}
    keys |= {T + "_positional_encoder._position_embeddings_weight": (c.num_position_buckets, d),
             T + "_positional_encoder._timestamp_embeddings_weight": (c.num_time_buckets + 1, d)}
    keys |= _mlp("_item_embedding_mlp", 2 * td, c.mlp_hidden, d)
    return keys


def test_tiny_state_dict_is_the_reference_key_set() -> None:
    m = ReferenceDlrmHSTU(TINY)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    want = expected_keys(TINY)
    assert got == want
    assert len(want) == 3 + 6 + 2 * 7 + 2 + 8 + 8 + 3 + 8 + 6 + 2 + 8 == 68
    tables = {k for k in want if "embedding_collection" in k}
    assert all(m.state_dict()[k].dtype == torch.float16 for k in tables)               # FP16 storage
    assert m.state_dict()[P + "_action_encoder._combined_action_weights"].tolist() == [1, 2, 4, 8, 16]
    assert m.state_dict()[T + "_output_postprocessor._period_units"].tolist() == [[3600.0, 86400.0]]
    assert m.state_dict()[T + "_output_postprocessor._units_per_period"].tolist() == [[24.0, 7.0]]
    dense = ReferenceDlrmHSTU(TINY, with_tables=False)                                  # is_dense=True
    assert set(dense.state_dict()) == set(want) - tables


def test_reference_sizes_are_the_mlperf_config() -> None:
    """The documented defaults (``configs.py``): 5 layers, 4 heads, 128/128, tables 512-wide FP16
    with 1e9 / 128 / 1e7 rows; built on the meta device (no memory)."""
    with torch.device("meta"):
        m = ReferenceDlrmHSTU(REFERENCE)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == expected_keys(REFERENCE)
    assert got["_embedding_collection.embeddings.item_id.weight"] == (1_000_000_000, 512)
    assert got[f"{T}_stu_module._stu_layers.4._uvqk_weight"] == (512, 2048)
    assert got[f"{T}_stu_module._stu_layers.4._output_weight"] == (1536, 512)
    assert got[P + "_action_embedding_mlp.0.weight"] == (256, 40)
    assert got[T + "_positional_encoder._timestamp_embeddings_weight"] == (2049, 512)
    assert REFERENCE.max_uih_len == 16384 - 32 - 1
    dense = sum(math.prod(v) for k, v in got.items() if "embedding_collection" not in k)
    assert dense == 16_693_594                                  # 63.7 MiB in float32 (README)
    # The params block's defaults are the same sizes (pydantic-only module, so written twice).
    assert reference_config(ReferenceModelParams().model_dump()) == REFERENCE
    # 1e9 x 512 FP16 rows = 1.024e12 bytes; 8 shards hold 125e6 rows = 128 GB each.
    assert 1_000_000_000 * 512 * 2 == 1_024_000_000_000 and 125_000_000 * 512 * 2 == 128_000_000_000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dlref") / "ckpt"
    assert make_main(["--out", str(out), "--seed", "7"]) == 0
    return out


@pytest.fixture(scope="module")
def lib() -> Any:
    wl = get_workload("dlrmv3")
    return make_library(wl, workload_params(wl, {"max_requests_per_ts": 4}))


def test_script_writes_the_reference_layout_and_loads_strictly(ckpt: Path) -> None:
    assert checkpoint_files(ckpt) == ["model.json", "non_sparse.ckpt", "sparse/.metadata", "sparse/__0_0.distcp"]
    blob = torch.load(ckpt / DENSE_FILE, weights_only=True)
    assert sorted(blob) == ["class_metrics", "dense_dict", "global_step", "optimizer_dict", "reg_metrics",
                            "sparse_tensor_keys"]
    tables = {f"_embedding_collection.embeddings.{n}.weight" for n in ("item_id", "item_category_id", "user_id")}
    assert blob["sparse_tensor_keys"] == tables
    import torch.distributed.checkpoint as dcp

    md = dcp.FileSystemReader(str(ckpt / "sparse")).read_metadata()
    assert set(md.state_dict_metadata) == {"sparse_dict." + k for k in tables}       # SparseState's prefix
    assert table_shape(ckpt, "item_id") == (8192, 16, torch.float16)
    values = json.loads((ckpt / "model.json").read_text())
    state = full_state_dict(ckpt)
    fresh = ReferenceDlrmHSTU(reference_config(values), seed=99)
    result = fresh.load_state_dict(state, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    made = ReferenceDlrmHSTU(reference_config(values), seed=7)                      # what the script saved
    assert all(torch.equal(v, state[k]) for k, v in made.state_dict().items())
    dense = ReferenceDlrmHSTU(reference_config(values), with_tables=False)
    dense.load_state_dict(dense_state_dict(ckpt), strict=True)


def test_streamed_rows_are_the_table_rows(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reference_suts.dlrmv3_hstu.reference_checkpoint as rc

    full = full_state_dict(ckpt)["_embedding_collection.embeddings.item_id.weight"]
    assert torch.equal(read_table_rows(ckpt, "item_id", 2731, 5462), full[2731:5462])
    monkeypatch.setattr(rc, "_SLAB_BYTES", 100)                 # 3 rows of 32 bytes per copy
    assert torch.equal(read_table_rows(ckpt, "item_id", 5, 1000), full[5:1000])
    assert read_table_rows(ckpt, "user_id", 10, 10).shape == (0, 16)
    with pytest.raises(ValueError, match=r"rows \[8000, 8193\) outside table 'item_id' of 8192 rows"):
        read_table_rows(ckpt, "item_id", 8000, 8193)
    with pytest.raises(ValueError, match=r"table 'nope' .* is not in .*sparse/.metadata"):
        table_shape(ckpt, "nope")


def _local_engine(model: ReferenceDlrmHSTU, **kw: Any) -> ReferenceEngine:
    tabs = {n: e.weight.detach() for n, e in model._embedding_collection.embeddings.items()}
    item = ShardedEmbedding.from_table(tabs["item_id"], 3)
    user = ShardedEmbedding.from_table(tabs["user_id"], 2)
    return ReferenceEngine(model, item.lookup_many, user.lookup_many, tabs["item_category_id"], 512, **kw)


def test_mfalcon_and_cache_equal_the_full_forward(lib: Any) -> None:
    """Tolerance 1e-6 absolute on the sigmoid scores (float32; observed ~3e-8)."""
    torch.set_num_threads(1)
    model = ReferenceDlrmHSTU(TINY, seed=1)
    reqs = [make_ref_request(lib.get(i), TINY) for i in range(6)]
    # Histories of 250-310 items (under the tiny budget of 1024 - 32 - 1), 64 candidates each.
    assert [(int(r.uih_ids.shape[0]), int(r.cand_ids.shape[0])) for r in reqs] == [
        (len(lib.get(i)["uih_ids"]), 64) for i in range(6)]
    assert all(250 <= int(r.uih_ids.shape[0]) <= 310 for r in reqs)
    base = _local_engine(model).predict(reqs)
    for mb, block in ((1, 1024), (7, 7), (64, 100)):        # history rows attended in blocks of `block`
        eng = _local_engine(model, microbatch=mb)
        eng.attn_block = block
        got = eng.predict(reqs)
        assert max(float((a - b).abs().max()) for a, b in zip(base, got, strict=True)) < 1e-6
    cache = RefCache()
    eng = _local_engine(model, microbatch=16, cache=cache)
    first, again = eng.predict(reqs), eng.predict(reqs)                 # a repeat hits every user
    assert cache.stats == {"hits": 6, "misses": 6, "invalidated": 0, "evicted": 0}
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert max(float((a - b).abs().max()) for a, b in zip(base, again, strict=True)) < 1e-6
    # The next timestamp of the same user has a longer history: every history position moves,
    # so the entry is invalidated (recomputed), never reused for a different history.
    longer = make_ref_request(lib.get(0), TINY)
    longer.uih_ids = torch.cat([longer.uih_ids, torch.tensor([5])])
    longer.uih_actions = torch.cat([longer.uih_actions, torch.tensor([16])])
    longer.uih_ts = torch.cat([longer.uih_ts, torch.tensor([1])])
    (p_cached,) = eng.predict([longer])
    (p_full,) = _local_engine(model).predict([longer])
    assert cache.stats["invalidated"] == 1 and float((p_cached - p_full).abs().max()) < 1e-6


def test_request_follows_the_reference_loader() -> None:
    sample = {"user": 3, "uih_ids": list(range(10)), "uih_ratings": [1.0, 2.9, 3.5, 4.0, 5.0] * 2,
              "cand_ids": [100, 101, 102]}
    cfg = reference_config({**TINY.to_dict(), "max_seq_len": 4 + 1 + 2, "max_num_candidates": 2,
                            "max_num_candidates_inference": 2})
    r = make_ref_request(sample, cfg)
    assert r.uih_ids.tolist() == [0, 1, 2, 3]                      # the first max_uih_len = 7 - 2 - 1 items
    assert r.uih_actions.tolist() == [1, 2, 4, 8]                  # action_weights[int(rating) - 1]
    assert r.uih_ts.tolist() == [1, 1, 1, 1] and r.query_time == 1
    assert r.cand_ids.tolist() == [100, 101]


def test_params_and_mismatched_checkpoint_errors(ckpt: Path, lib: Any) -> None:
    with pytest.raises(ParamsError, match=r"^sut.params.checkpoint: required"):
        validate_params(DLRMv3ReferenceParams, {}, "sut.params")
    assert get_sut("dlrmv3_reference").params_model is DLRMv3ReferenceParams
    values = json.loads((ckpt / "model.json").read_text())
    with pytest.raises(ValueError, match=r"table 'item_id' in .* is 8192 x 16 but sut.params.arch says 9000 x 16"):
        build_reference_engine({"checkpoint": str(ckpt), "arch": {**values, "item_rows": 9000}}, 512)
    with pytest.raises(ValueError, match=r"_stu_layers.2._input_norm_bias missing from .*non_sparse.ckpt"):
        build_reference_engine({"checkpoint": str(ckpt), "arch": {**values, "num_layers": 3}}, 512)
    with pytest.raises(ParamsError, match=r"^sut.params.device: 'tpu' is not one of auto, cpu, cuda, cuda:N$"):
        validate_params(DLRMv3ReferenceParams, {"checkpoint": "x", "device": "tpu"}, "sut.params")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"sut.params.device='cuda' but CUDA is not available"):
            build_reference_engine({"checkpoint": str(ckpt), "arch": values, "device": "cuda"}, 512)
    with pytest.raises(ValueError, match=r"cannot read dense_dict of .*nowhere/non_sparse.ckpt"):
        build_reference_engine({"checkpoint": str(ckpt / "nowhere"), "arch": values}, 512)


def test_sut_serves_the_checkpoint_exactly(ckpt: Path, lib: Any) -> None:
    """The SUT (tables streamed from disk into 3 local shards, M-FALCON) returns the in-memory
    model's scores bit for bit (same float32 code path), with the sample's labels."""
    values = json.loads((ckpt / "model.json").read_text())
    sut = DLRMv3ReferenceSUT({"checkpoint": str(ckpt), "arch": values, "n_shards": 3, "microbatch": 16,
                              "streaming": False})
    ctx = SUTContext(workload="dlrmv3", scenario="Offline", mode="AccuracyOnly",
                     workload_params={"max_requests_per_ts": 4})
    idx = list(range(5))
    samples = [lib.get(i) for i in idx]

    async def main() -> list:
        await sut.start(ctx)
        return list(await sut.issue(Query(id=0, indices=idx, samples=samples)))

    resp = asyncio.run(main())
    model = ReferenceDlrmHSTU(reference_config(values), seed=7)
    want = _local_engine(model, microbatch=16).predict([make_ref_request(s, model.cfg) for s in samples])
    for r, s, w in zip(resp, samples, want, strict=True):
        ts_idx, query_idx, preds, labels, weights = decode_payload(r.data)
        assert (ts_idx, query_idx) == (s["ts_idx"], s["query_idx"])
        assert torch.equal(torch.from_numpy(preds.copy()), w)
        assert labels.tolist() == s["labels"].tolist() and weights.tolist() == [1.0] * len(s["labels"])
    info = sut.info()
    assert [(s["rows"], s["memory_bytes"]) for s in info["embedding_shards"]] == [
        (2731, 2731 * 32), (2731, 2731 * 32), (2730, 2730 * 32)]                 # 16 FP16 values a row
    assert info["user_embedding_memory_bytes"] == 512 * 16 * 2
    pickle.dumps(validate_params(DLRMv3ReferenceParams, {"checkpoint": str(ckpt), "arch": values}, "sut.params"))


def test_index_math_by_hand() -> None:
    """User token + 3 history items + 2 candidates (N = 6), as ``pt_position._get_col_indices``
    and ``pt_hstu_attention._get_valid_attn_mask`` give them for this sequence."""
    # high = 6 - 2 = 4; columns clamped to 4; 4 - col + 1; the user token set to 0.
    assert position_ids(6, 2, 1, 8192).tolist() == [0, 4, 3, 2, 1, 1]
    assert position_ids(6, 2, 1, 3).tolist() == [0, 2, 2, 2, 1, 1]             # clamped to the table
    assert attention_mask(6, 2).int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],        # candidate 1: the user token, the history and itself
        [1, 1, 1, 1, 0, 1],        # candidate 2: not candidate 1
    ]
    # Timestamps [0 (user), 1, 1, 1, 1 (query), 1]: the user token is 1 s old -> sqrt(1/60) -> 0;
    # 3600 s -> sqrt(60) = 7.7 -> 7; 86400 s -> sqrt(1440) = 37.9 -> 37, clamped at 31.
    assert time_buckets(torch.tensor([0, 1, 1, 1, 1, 1]), 2047).tolist() == [0] * 6
    assert time_buckets(torch.tensor([-3599, -86399, 1]), 2047).tolist() == [7, 37, 0]
    assert time_buckets(torch.tensor([-3599, -86399, 1]), 31).tolist() == [7, 31, 0]


def _write_chunked(root: Path, table: Any, chunks: list[tuple[tuple[int, int], tuple[int, int], int]]) -> None:
    """A DCP ``sparse/`` directory as a multi-rank save leaves it: each chunk ``(offsets, sizes,
    rank)`` a ``torch.save`` archive appended to ``__<rank>_0.distcp``, indexed by ``.metadata``."""
    import io

    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        TensorProperties,
        TensorStorageMetadata,
    )

    fqn = "sparse_dict._embedding_collection.embeddings.item_id.weight"
    files: dict[int, io.BytesIO] = {}
    storage, metas = {}, []
    for i, ((r, c), (nr, nc), rank) in enumerate(chunks):
        f = files.setdefault(rank, io.BytesIO())
        start = f.tell()
        torch.save(table[r:r + nr, c:c + nc].clone(), f)
        storage[MetadataIndex(fqn, torch.Size([r, c]), i)] = _StorageInfo(f"__{rank}_0.distcp", start, f.tell() - start)
        metas.append(ChunkStorageMetadata(offsets=torch.Size([r, c]), sizes=torch.Size([nr, nc])))
    (root / "sparse").mkdir(parents=True)
    for rank, f in files.items():
        (root / "sparse" / f"__{rank}_0.distcp").write_bytes(f.getvalue())
    md = Metadata(state_dict_metadata={fqn: TensorStorageMetadata(TensorProperties(dtype=torch.float16),
                                                                  torch.Size(table.shape), metas)},
                  storage_data=storage)
    (root / "sparse" / ".metadata").write_bytes(pickle.dumps(md))


def test_rows_across_chunks_of_several_ranks(tmp_path: Path) -> None:
    """Rows 0-3 saved by rank 0; rows 4-9 split by columns, both halves in rank 1's file (the
    second at a byte offset): a row range spanning them reads back exactly."""
    table = torch.arange(60, dtype=torch.float16).reshape(10, 6)
    _write_chunked(tmp_path / "a", table, [((0, 0), (4, 6), 0), ((4, 0), (6, 3), 1), ((4, 3), (6, 3), 1)])
    assert table_shape(tmp_path / "a", "item_id") == (10, 6, torch.float16)
    assert torch.equal(read_table_rows(tmp_path / "a", "item_id", 2, 9), table[2:9])
    assert torch.equal(read_table_rows(tmp_path / "a", "item_id", 5, 6), table[5:6])
    _write_chunked(tmp_path / "b", table, [((0, 0), (4, 6), 0), ((4, 0), (6, 3), 1)])     # a half is missing:
    # rows 2-3 whole (12 values) + rows 4-8 left half (15) of 7 x 6 = 42
    with pytest.raises(ValueError, match=r"cover 27 of 42 values of rows \[2, 9\)"):
        read_table_rows(tmp_path / "b", "item_id", 2, 9)


def test_script_overrides_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_main(["--out", str(tmp_path / "c3"), "--set", "num_layers=3", "--set", "item_rows=1024"]) == 0
    values = json.loads((tmp_path / "c3" / "model.json").read_text())
    assert (values["num_layers"], values["item_rows"]) == (3, 1024)
    state = full_state_dict(tmp_path / "c3")
    assert state["_embedding_collection.embeddings.item_id.weight"].shape == (1024, 16)
    ReferenceDlrmHSTU(reference_config(values)).load_state_dict(state, strict=True)
    capsys.readouterr()
    assert make_main(["--out", str(tmp_path / "bad"), "--set", "num_layerz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_dlrmv3_reference_checkpoint: --set 'num_layerz=3': expected <field>=<value>")
    assert make_main(["--out", str(tmp_path / "big"), "--set", "item_rows=100000000"]) == 2
    assert "too big for a test checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "big").exists()
