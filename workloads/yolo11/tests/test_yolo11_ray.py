"""YOLO11 end to end on a local Ray: random-init yolo11n (Offline, SingleStream, accuracy log) and the oracle.

One module-scoped local Ray (``ray_local``). The SUT runs as a ``SUTReplica`` actor and the
load generator as a ``LoadGenShard`` actor, so images cross process boundaries exactly as in a
cluster run. Sizes are small (imgsz 160, 16 demo images, 0.5-1 s minimum durations).

The random-init net scores every box ~1.6e-4, under the MLPerf threshold (conf 0.001): at that
threshold it finds nothing. The accuracy-log test therefore runs it at conf 0, where NMS keeps at
least the best box of every image; the oracle test pins the exact payloads and mAP.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from raybench.core.protocols import SUTContext
from raybench.testing import ray_run
from workloads.yolo11 import WORKLOAD
from workloads.yolo11.accuracy import decode_payload, score
from workloads.yolo11.categories import COCO_80_TO_91, COCO_91_TO_80
from workloads.yolo11.oracle import OracleYoloSUT

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
    # conf 0: every candidate passes the threshold, NMS always keeps the best one, max_det caps at 10.
    out, _ = ray_run(tmp_path, *YOLO, "scenario=SingleStream", "mode=AccuracyOnly", "sut.params.conf=0",
                     "sut.params.max_det=10")
    m = out.metrics
    assert m.samples_completed == 16 and m.num_errors == 0
    entries = _accuracy_entries(out.run_dir)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(16))
    for e in entries:
        raw = bytes.fromhex(e["data"])
        boxes = decode_payload(raw)
        assert 1 <= len(boxes) <= 10 and len(raw) == 28 * len(boxes), (e["qsl_idx"], len(raw))
        assert np.all(boxes[:, 0] == e["qsl_idx"])  # the payload carries its own qsl index
        ymin, xmin, ymax, xmax = boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
        # normalised by the image size after ultralytics clips to the image: exactly within [0, 1]
        assert np.all((0 <= ymin) & (ymin <= ymax) & (ymax <= 1) & (0 <= xmin) & (xmin <= xmax) & (xmax <= 1))
        assert np.all((boxes[:, 5] > 0) & (boxes[:, 5] <= 1))  # confidences
        assert set(boxes[:, 6].astype(int).tolist()) <= set(COCO_80_TO_91)  # 91-set category ids
    txt = (out.run_dir / "accuracy.txt").read_text()
    assert {"found 16 results", "found 16 images", "found 0 images with no results"} <= set(txt.splitlines())
    acc = out.accuracy.metrics
    assert (acc["entries"], acc["images"], acc["no_result_images"], acc["duplicates"], acc["idx_mismatch"]) == (
        16, 16, 0, 0, 0)
    assert 0.0 <= acc["mAP"] < 1.0 and f"mAP={acc['mAP']:.3f}%" in txt.splitlines()
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
    # The same oracle in this process: every payload crossed Ray byte for byte.
    local = OracleYoloSUT({"workload_params": dict(WORKLOAD.params)})
    asyncio.run(local.start(SUTContext("yolo11", "Offline", "AccuracyOnly")))
    entries = _accuracy_entries(out.run_dir)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(64))
    logged = [(e["qsl_idx"], bytes.fromhex(e["data"])) for e in entries]
    assert all(data == local.answer(i) for i, data in logged)
    boxes = [decode_payload(data) for _, data in logged]
    assert all(len(b) > 0 for b in boxes)  # the demo images all have objects
    assert sum(len(b) for b in boxes) == sum(  # one box per scored ground-truth annotation
        1 for i in range(64) for a in local._library.ground_truth(i)
        if not a.get("iscrowd") and a["category_id"] in COCO_91_TO_80)
    # The scorer on the ground truth itself gives exactly the Ray run's metrics: 100 % mAP.
    expected = score(logged, local._library, dict(WORKLOAD.params))
    assert expected.metrics["mAP"] == 100.0 and expected.passed is True
    assert out.accuracy.metrics == expected.metrics and out.accuracy.passed is True
    txt = (out.run_dir / "accuracy.txt").read_text()
    assert "mAP=100.000%" in txt.splitlines()


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
