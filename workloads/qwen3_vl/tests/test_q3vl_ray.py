"""Qwen3-VL end to end on a local Ray: the tiny random Qwen3-VL (hf_transformers) and the oracle.

The SUT runs in a ``SUTReplica`` actor, so each request (chat messages with the product photo as
a base64 data URL) is pickled from the load-generator shard to the replica and decoded there by
the model's processor. One module-scoped local Ray (``ray_local``).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from raybench.testing import ray_run
from workloads.qwen3_vl.accuracy import accuracy_txt, hierarchical_f1, unparsable_category

pytest.importorskip("transformers")
pytestmark = pytest.mark.ray


def test_tiny_qwen3_vl_offline_accuracy_on_ray(ray_local, tmp_path: Path) -> None:  # noqa: F811
    from PIL import Image

    from workloads.qwen3_vl.dataset import load_library

    out, _ = ray_run(tmp_path, "workload=qwen3_vl", "sut=hf_transformers", "scenario=Offline", "mode=AccuracyOnly",
                     "sut.params.max_new_tokens=16")
    m = out.metrics
    assert (m.samples_completed, m.num_errors) == (32, 0)
    assert m.total_tokens > 0  # the replica generated (n_tokens came back across the actor boundary)

    # What the shard sent: a real, decodable photo per request, at its stored size (never resized).
    lib = load_library({})
    lib.load(range(32))
    truths = [lib.ground_truth(i)["category"] for i in range(32)]
    for i in (0, 1):
        url = lib.get(i)["messages"][1]["content"][-1]["image_url"]["url"]
        header, _, b64 = url.partition(",")
        assert header in ("data:image/JPEG;base64", "data:image/PNG;base64")
        assert min(Image.open(io.BytesIO(base64.b64decode(b64))).size) > 0

    # Random weights never produce the JSON schema: every response is a full mismatch of the
    # truth's depth, so F1 is exactly what the scorer gives for 32 unparsable answers.
    expected_f1, _, _ = hierarchical_f1((unparsable_category(t), t) for t in truths)
    assert expected_f1 == 0.0
    acc = out.accuracy
    assert acc.metrics["unparsable"] == acc.metrics["responses"] == 32.0
    assert acc.metrics["f1"] == expected_f1 and acc.passed is False
    assert (out.run_dir / "accuracy.txt").read_text() == accuracy_txt(expected_f1) + "\n"
    entries = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(32))


def test_oracle_on_ray_scores_f1_1(ray_local, tmp_path: Path) -> None:  # noqa: F811
    out, _ = ray_run(tmp_path, "workload=qwen3_vl", "sut=oracle_q3vl", "scenario=Offline", "mode=AccuracyOnly")
    assert out.metrics.samples_completed == 32 and out.metrics.num_errors == 0
    assert out.accuracy.metrics["f1"] == 1.0 and out.accuracy.metrics["unparsable"] == 0.0
    assert out.accuracy.passed is True
    assert '{"f1": 1.0}' in (out.run_dir / "accuracy.txt").read_text().splitlines()


@pytest.mark.parametrize("user_conf", [False, True])
def test_server_bound_is_12_s_from_mlperf_conf(tmp_path: Path, user_conf: bool) -> None:
    from raybench.config import load_run_config
    from raybench.run import prepare_run

    sets = ["workload=qwen3_vl", "scenario=Server", f"out={tmp_path}"]
    if user_conf:  # a real run: no demo overrides, mlperf.conf + user.conf only
        conf = tmp_path / "user.conf"
        conf.write_text("qwen3-vl-235b-a22b.Server.target_qps = 5\n")
        sets.append(f"user_conf={conf}")
    prepared = prepare_run(load_run_config(None, sets))
    s = prepared.settings
    assert (s.server_target_latency_ns, s.server_target_latency_percentile) == (12_000_000_000, 0.99)
    assert s.use_token_latencies is False
    assert prepared.sut.name == "hf_transformers"
