"""Ultralytics YOLO reference SUT (MLPerf ``yolo_loadgen.py`` semantics, async, batched).

Only the spec lives here; ``sut.py`` imports torch/ultralytics lazily in ``start()``.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.ultralytics_yolo.params import UltralyticsYoloParams

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="ultralytics_yolo",
    description="YOLO11 via ultralytics.YOLO.predict (conf 0.001, imgsz 640), MLPerf COCO payload",
    entry="reference_suts.ultralytics_yolo.sut:UltralyticsYoloSUT",
    extra="yolo",
    params_model=UltralyticsYoloParams,
)
