"""YOLO11 end to end on a local Ray: random-init yolo11n (Offline, SingleStream, accuracy log) and the oracle.

One module-scoped local Ray (``ray_local``). The SUT runs as a ``SUTReplica`` actor and the
load generator as a ``LoadGenShard`` actor, so images cross process boundaries exactly as in a
cluster run. Sizes are small (imgsz 160, 16 demo images, 0.5-1 s minimum durations).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from raybench.testing import ray_run
from workloads.yolo11.accuracy import decode_payload

pytest.importorskip("ultralytics")
pytestmark = pytest.mark.ray

YOLO = ("workload=yolo11", "sut=ultralytics_yolo", "workload.params.count=16", "sut.params.imgsz=160",
        "sut.params.max_batch=4")


def _mllog_lines(run_dir: Path) -> list[dict]:
    """Every line of mlperf_log_detail.txt as JSON (raises if one is not)."""
    lines = (run_dir / "mlperf_log_detail.txt").read_text().splitlines()
    assert lines and all(line.startswith(":::MLLOG ") for line in lines)
    return [json.loads(line[len(":::MLLOG "):]) for line in lines]


def _accuracy_entries(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "mlperf_log_accuracy.json").read_text())


def test_yolo11n_offline_on_ray_performance(ray_local, tmp_path: Path) -> None:  # noqa: F811
    # Offline issues 1.1 x expected_qps x min_duration = 1.1 x 240/s x 0.1 s = 26 samples (LoadGen's
    # 10 % slack; 16 images, so 10 repeat); the run takes longer than 0.1 s, so the duration holds.
    out, ex = ray_run(tmp_path, *YOLO, "scenario=Offline", "settings.offline_expected_qps=240",
                      "settings.min_duration_ms=100", "settings.min_query_count=1")
    m = out.metrics
    assert (m.validity, m.invalid_reasons) == ("VALID", [])
    assert m.samples_issued == m.samples_completed == 26 and m.num_errors == 0
    assert m.samples_per_second > 0
    res = json.loads((out.run_dir / "result.json").read_text())
    assert (res["validity"], res["sut"], res["scenario"], res["samples_completed"]) == (
        "VALID", "ultralytics_yolo", "Offline", 26)
    logs = _mllog_lines(out.run_dir)
    by_key = {rec["key"]: rec["value"] for rec in logs}
    assert by_key["result_validity"] == "VALID"
    assert by_key["effective_scenario"] == "Offline"
    assert _accuracy_entries(out.run_dir) == []  # PerformanceOnly logs no payloads
    system = json.loads((out.run_dir / "system.json").read_text())
    assert len(ex.placements) == 1 and system["number_of_nodes"] == 1
    assert (system["sut"]["name"], system["sut"]["params"]["imgsz"]) == ("ultralytics_yolo", 160)


def test_yolo11n_singlestream_on_ray_accuracy_log(ray_local, tmp_path: Path) -> None:  # noqa: F811
    out, _ = ray_run(tmp_path, *YOLO, "scenario=SingleStream", "mode=AccuracyOnly")
    m = out.metrics
    assert m.samples_completed == 16 and m.num_errors == 0
    entries = _accuracy_entries(out.run_dir)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(16))
    for e in entries:
        raw = bytes.fromhex(e["data"])
        assert len(raw) % 28 == 0  # 7 float32 per box (a random net may find none)
        boxes = decode_payload(raw)
        assert np.all(boxes[:, 0] == e["qsl_idx"])  # the payload carries its own qsl index
        assert np.all((boxes[:, 1:5] >= -0.01) & (boxes[:, 1:5] <= 1.01))  # normalised coordinates
    txt = (out.run_dir / "accuracy.txt").read_text()
    assert "mAP=" in txt and out.accuracy is not None and 0.0 <= out.accuracy.metrics["mAP"] < 1.0
    logs = _mllog_lines(out.run_dir)
    assert {rec["key"]: rec["value"] for rec in logs}["effective_test_mode"] == "AccuracyOnly"


def test_yolo11n_singlestream_on_ray_performance(ray_local, tmp_path: Path) -> None:  # noqa: F811
    # 64 queries: the fewest for which the p90 early-stopping estimate can be met.
    out, _ = ray_run(tmp_path, *YOLO, "scenario=SingleStream", "settings.min_query_count=64",
                     "settings.min_duration_ms=500")
    m = out.metrics
    assert m.validity == "VALID", m.invalid_reasons
    assert m.queries_issued == m.samples_completed >= 64 and m.num_errors == 0
    assert _mllog_lines(out.run_dir)


def test_oracle_through_ray_scores_100(ray_local, tmp_path: Path) -> None:  # noqa: F811
    out, _ = ray_run(tmp_path, "workload=yolo11", "sut=oracle_yolo", "scenario=Offline", "mode=AccuracyOnly")
    assert out.metrics.samples_completed == 64 and out.metrics.num_errors == 0
    txt = (out.run_dir / "accuracy.txt").read_text()
    assert "mAP=100.000%" in txt.splitlines()
    assert out.accuracy.metrics["mAP"] == pytest.approx(100.0) and out.accuracy.passed is True
    assert os.path.getsize(out.run_dir / "mlperf_log_accuracy.json") > 0


def test_default_threads_follow_the_replica_num_cpus(ray_local) -> None:  # noqa: F811
    from reference_suts.ultralytics_yolo.sut import UltralyticsYoloSUT

    @ray_local.remote
    def threads(params: dict) -> int:
        return UltralyticsYoloSUT(params).num_threads

    cores = len(os.sched_getaffinity(0))
    got = ray_local.get([threads.options(num_cpus=c).remote({}) for c in (0, 1, 2)])
    assert got == [1, 1, min(2, cores)]
    assert ray_local.get(threads.options(num_cpus=1).remote({"num_threads": 3})) == 3  # explicit wins
    assert UltralyticsYoloSUT({}).num_threads == cores  # the driver: not a Ray worker


def test_replica_process_is_offline_and_uses_its_cpus(ray_local) -> None:  # noqa: F811
    """Inside a Ray worker (what a ``SUTReplica`` is), start() sets the offline env and the threads."""

    @ray_local.remote
    def started(cache: str) -> tuple:
        import asyncio

        os.environ["RAYBENCH_CACHE"] = cache
        from raybench.core.protocols import SUTContext
        from reference_suts.ultralytics_yolo.sut import UltralyticsYoloSUT

        async def run():
            sut = UltralyticsYoloSUT({"imgsz": 64})
            await sut.start(SUTContext("yolo11", "Offline", "PerformanceOnly"))
            import torch
            from ultralytics import settings

            threads = sut._executor.submit(torch.get_num_threads).result()
            await sut.stop()
            return os.environ.get("YOLO_OFFLINE"), os.environ.get("YOLO_CONFIG_DIR"), settings["sync"], threads

        return asyncio.run(run())

    cache = os.environ.get("RAYBENCH_CACHE", "~/.cache/raybench")
    offline, config_dir, sync, threads = ray_local.get(started.options(num_cpus=2).remote(cache))
    assert (offline, sync, threads) == ("1", False, min(2, len(os.sched_getaffinity(0))))
    assert config_dir and Path(config_dir).is_dir()  # ultralytics' settings file lives there, not in ~
