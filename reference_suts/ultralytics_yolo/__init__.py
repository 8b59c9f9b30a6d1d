"""Ultralytics YOLO reference SUT (MLPerf ``yolo_loadgen.py`` semantics, async, batched).

Only the spec lives here; ``sut.py`` imports torch/ultralytics lazily in ``start()``.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="ultralytics_yolo",
    description="YOLO11 via ultralytics.YOLO.predict (conf 0.001, imgsz 640), MLPerf COCO payload",
    entry="reference_suts.ultralytics_yolo.sut:UltralyticsYoloSUT",
    extra="yolo",
    params={
        "weights": "yolo11n.yaml",  # random init (demo/tests); real runs: a local yolo11l.pt
        "imgsz": 640,
        "conf": 0.001,
        "iou": 0.7,
        "max_det": 300,
        "device": None,  # None = cuda:0 if available, else cpu
        "half": False,
        "num_threads": None,  # None = all cores available to the process
        "max_batch": 8,
        "max_inflight": 2,
        "warmup_iters": 1,
    },
)
