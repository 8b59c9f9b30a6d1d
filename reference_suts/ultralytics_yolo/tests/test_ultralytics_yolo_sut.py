"""The Ultralytics YOLO SUT: offline weight resolution, params, and a real predict on demo images."""

from __future__ import annotations

import asyncio
import importlib.util
import struct

import numpy as np
import pytest

from raybench.core.protocols import Query, SUTContext
from raybench.registry import get_sut, get_workload, make_library, sut_params, workload_params
from reference_suts.ultralytics_yolo import SUT_SPEC
from reference_suts.ultralytics_yolo.sut import UltralyticsYoloSUT, resolve_weights
from workloads.yolo11.payload import COCO_80_TO_91, decode_payload

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None


def test_spec_matches_defaults():
    assert SUT_SPEC.entry == "reference_suts.ultralytics_yolo.sut:UltralyticsYoloSUT"
    assert dict(SUT_SPEC.params) == {
        "weights": "yolo11n.yaml", "imgsz": 640, "conf": 0.001, "iou": 0.7, "max_det": 300, "device": None,
        "half": False, "num_threads": None, "max_batch": 8, "max_inflight": 2, "warmup_iters": 1,
    }  # fmt: skip
    sut = UltralyticsYoloSUT(dict(SUT_SPEC.params))
    assert (sut.max_batch, sut.max_inflight, sut.imgsz, sut.conf) == (8, 2, 640, 0.001)
    assert sut.num_threads >= 1


def test_hub_names_are_refused_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found: yolo11l.pt .*hub downloads are disabled"):
        resolve_weights("yolo11l.pt")
    assert resolve_weights("yolo11n.yaml") == "yolo11n.yaml"
    local = tmp_path / "m.pt"
    local.write_bytes(b"x")
    assert resolve_weights(str(local)) == str(local)


def test_start_with_missing_weights_fails_clearly():
    sut = UltralyticsYoloSUT({"weights": "/nonexistent/yolo11l.pt"})

    async def run():
        try:
            await sut.start(SUTContext("yolo11", "Offline", "PerformanceOnly"))
        finally:
            await sut.stop()

    with pytest.raises(FileNotFoundError, match="/nonexistent/yolo11l.pt"):
        asyncio.run(run())


def test_bad_params():
    with pytest.raises(ValueError, match=r"^sut\.params\.max_batchs: unknown field$"):
        UltralyticsYoloSUT({"max_batchs": 4})
    with pytest.raises(ValueError, match=r"^sut\.params\.max_batch: Input should be greater than or equal to 1"):
        sut_params(get_sut("ultralytics_yolo"), None, {"max_batch": 0})


@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")
def test_random_yolo11n_predicts_demo_images(tmp_path, monkeypatch):
    """yolo11n.yaml (random init) on 3 demo images, batches of 2, two queries in flight.

    The conf threshold is lowered to 1e-5 because a randomly initialised head scores ~2e-4, so the
    MLPerf 0.001 would return no box at all. Payloads of images predicted alone must equal what the
    reference loop packs with struct.pack("7f", ...) from a direct model.predict of the same image.
    """
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_VERBOSE", "False")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    yolo11 = get_workload("yolo11")
    lib = make_library(yolo11, workload_params(yolo11, {"demo_images": 3}))  # a 3-image demo in the cache
    lib.load(range(3))
    sut = UltralyticsYoloSUT(
        {"weights": "yolo11n.yaml", "imgsz": 256, "conf": 1e-5, "max_batch": 2, "num_threads": 2}
    )

    async def run():
        await sut.start(SUTContext("yolo11", "Offline", "AccuracyOnly"))
        queries = [
            Query(id=1, indices=[0, 1, 2], samples=[lib.get(i) for i in (0, 1, 2)]),
            Query(id=2, indices=[1], samples=[lib.get(1)]),
        ]
        responses = await asyncio.gather(*(sut.issue(q) for q in queries))
        import torch

        threads = await asyncio.get_running_loop().run_in_executor(sut._executor, torch.get_num_threads)
        reference = await asyncio.get_running_loop().run_in_executor(
            sut._executor,
            lambda: [
                sut._model.predict(lib.get(i).image, imgsz=256, conf=1e-5, verbose=False)[0]
                for i in (0, 1, 2)
            ],
        )
        broken = await sut.issue(Query(id=3, indices=[7], samples=[np.zeros((0, 0, 3), np.uint8)]))
        await sut.stop()
        return responses, threads, reference, broken

    (batch, single), threads, reference, broken = asyncio.run(run())
    assert threads == 2
    assert len(broken) == 1 and broken[0].data == b"" and broken[0].error  # reported, not raised
    assert len(batch) == 3 and len(single) == 1 and all(r.error is None for r in (*batch, *single))
    packed = []
    for idx, res in enumerate(reference):
        h, w = res.orig_shape
        assert (h, w) == lib.get(idx).orig_hw
        packed.append(
            b"".join(
                struct.pack(
                    "7f",
                    float(idx),
                    float(b[1] / h),
                    float(b[0] / w),
                    float(b[3] / h),
                    float(b[2] / w),
                    float(s),
                    float(COCO_80_TO_91[c]),
                )
                for b, s, c in zip(
                    res.boxes.xyxy.cpu().numpy(),
                    res.boxes.conf.cpu().numpy(),
                    res.boxes.cls.cpu().numpy().astype(int),
                    strict=True,
                )
            )
        )
    # Images predicted alone (query 2; image 2, alone in the second chunk of query 1) equal the reference
    # loop bit for bit. Images 0 and 1 share a chunk with different shapes, which ultralytics letterboxes
    # to a square instead of a minimal rectangle, so their boxes legitimately differ a little.
    assert single[0].data == packed[1] and batch[2].data == packed[2]
    for idx, resp in enumerate(batch):
        rows = decode_payload(resp.data)
        assert len(rows) > 0
        assert np.all(rows[:, 0] == idx)
        assert np.all((rows[:, 1:5] >= 0) & (rows[:, 1:5] <= 1))
        assert np.all(rows[:, 5] >= 1e-5) and set(rows[:, 6].astype(int)) <= set(COCO_80_TO_91)
