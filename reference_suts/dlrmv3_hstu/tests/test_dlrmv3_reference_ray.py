"""End to end on Ray: a reference-layout dataset -> ``dlrmv3_reference`` SUT with a script-made reference checkpoint
(tables streamed into embedding-shard actors) -> accuracy log -> NE / accuracy / AUC, in Server
and Offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ray")

from raybench.core.spec import load_object  # noqa: E402
from raybench.registry import get_workload, make_library, workload_params  # noqa: E402
from raybench.testing import ray_run  # noqa: E402
from reference_suts.dlrmv3_hstu.reference_model import make_ref_request  # noqa: E402
from reference_suts.dlrmv3_hstu.reference_sut import build_reference_engine  # noqa: E402
from scripts.make_dlrmv3_reference_checkpoint import main as make_main  # noqa: E402
from workloads.dlrmv3.payload import decode_payload, encode_payload  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset in the MLPerf reference's on-disk layout (``0.csv``, ``offset.csv``,
    ``requests_per_ts.csv`` ...): the workload generator's CLI (a SUT's tests use the workload's
    public interfaces only), ``tiny`` preset with 64 users."""
    out = tmp_path_factory.mktemp("dlrefray") / "ref"
    cmd = [sys.executable, "-m", "workloads.dlrmv3.generator", "--preset", "tiny", "--num-users", "64", "--num-shards", "2",
           "--layout", "reference", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "offset.csv").is_file() and (out / "requests_per_ts.csv").is_file()
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dlrefckpt") / "ckpt"
    assert make_main(["--out", str(out), "--seed", "11"]) == 0
    return out


@pytest.mark.parametrize("scenario,extra", [("Server", ("sut.params.microbatch=16",)),
                                            ("Offline", ("sut.params.uih_cache=true",))])
def test_reference_checkpoint_accuracy_on_ray(ray_local, ref_dir: Path, ckpt: Path, tmp_path: Path,  # noqa: F811
                                              scenario: str, extra: tuple[str, ...]) -> None:
    """40 requests (the first 4 of each inference timestamp of the reference-layout files), every
    one scored once: the accuracy log carries,
    per request, exactly the scores the same engine gives in this process, and NE / accuracy /
    GAUC are those of these scores."""
    model = json.loads((ckpt / "model.json").read_text())
    out, _ = ray_run(tmp_path / scenario, "workload=dlrmv3", "sut=dlrmv3_reference", f"scenario={scenario}",
                     "mode=AccuracyOnly", "workload.params.layout=reference", f"workload.params.data_dir={ref_dir}",
                     "workload.params.max_requests_per_ts=4", f"sut.params.checkpoint={ckpt}",
                     f"sut.params.arch={json.dumps(model)}", "sut.params.n_shards=2", *extra)
    m = out.metrics
    assert (m.samples_completed, m.num_errors) == (40, 0)
    entries = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    assert len(entries) == 40
    wl = get_workload("dlrmv3")
    lib = make_library(wl, workload_params(wl, {"layout": "reference", "data_dir": str(ref_dir),
                                                "max_requests_per_ts": 4}))
    params = {"checkpoint": str(ckpt), "arch": model, "microbatch": 16 if scenario == "Server" else 0,
              "uih_cache": scenario == "Offline"}
    torch.set_num_threads(1)
    cfg, _, _, engine = build_reference_engine(params, lib.data.params.items_per_category)
    seen = set()
    for e in entries:
        ts_idx, query_idx, preds, labels, weights = decode_payload(bytes.fromhex(e["data"]))
        sample = lib.get(lib.index_of(ts_idx, query_idx))
        (want,) = engine.predict([make_ref_request(sample, cfg)])
        assert np.array_equal(preds, want.numpy())                   # bit for bit, through the actors
        assert np.array_equal(labels, sample["labels"])
        assert weights.tolist() == [1.0] * len(labels)
        seen.add((ts_idx, query_idx))
    assert len(seen) == 40 and sorted({t for t, _ in seen}) == list(range(10))
    # The workload's scorer on the in-process scores, in the log's order, gives the run's metrics.
    local = [(0, engine_payload) for engine_payload in _payloads(entries, lib, engine, cfg)]
    expected = load_object(wl.accuracy)(local, lib, {}).metrics
    got = out.accuracy.metrics
    assert {k: got[k] for k in ("ne", "accuracy", "gauc")} == {k: expected[k] for k in ("ne", "accuracy", "gauc")}
    assert 0.0 < got["gauc"] < 1.0 and 0.0 < got["accuracy"] < 1.0 and got["ne"] > 0.0
    assert got["unique_requests"] == 40.0
    text = (out.run_dir / "accuracy.txt").read_text()
    assert "lifetime_ne" in text and "lifetime_gauc" in text
    system = json.loads((out.run_dir / "system.json").read_text())
    info = system["sut_replicas"][0]["sut_info"]
    # 2 embedding-shard actors per streamed table: 8192 x 16 FP16 item rows, 512 user rows.
    assert [(s["rows"], s["memory_bytes"]) for s in info["embedding_shards"]] == [(4096, 4096 * 32)] * 2
    assert [(s["rows"], s["memory_bytes"]) for s in info["user_embedding_shards"]] == [(256, 256 * 32)] * 2
    assert info["embedding_actors"] == 2 and len({s["pid"] for s in info["embedding_shards"]}) == 2


def _payloads(entries: list[dict[str, Any]], lib: Any, engine: Any, cfg: Any) -> list[bytes]:
    """The payloads this process computes for the requests of ``entries``, in their order."""
    out = []
    for e in entries:
        ts_idx, query_idx, *_ = decode_payload(bytes.fromhex(e["data"]))
        sample = lib.get(lib.index_of(ts_idx, query_idx))
        (p,) = engine.predict([make_ref_request(sample, cfg)])
        out.append(encode_payload(ts_idx, query_idx, p.numpy(), sample["labels"]))
    return out
