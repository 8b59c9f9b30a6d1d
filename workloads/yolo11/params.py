"""Parameters of the YOLO11 (COCO) workload and of its oracle SUT (pydantic only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["OracleYoloParams", "Yolo11Params"]


class Yolo11Params(Params):
    """Parameters of the yolo11 workload (``workload.params``)."""

    data_dir: str | None = None
    """Dataset root (``None`` = the embedded demo, generated once into the cache)."""
    annotations: str = "annotations/instances_val2017.json"
    """COCO instances JSON, relative to ``data_dir`` unless absolute."""
    images: str | None = None
    """Image folder, relative to ``data_dir`` unless absolute (``None`` = the first of val2017_safe,
    val2017, images that exists)."""
    count: int | None = Field(None, ge=1)
    """Use only the first N images."""
    performance_count: int | None = Field(None, ge=1)
    """QSL performance sample count (``None`` = min(total, 500), as the reference QSL)."""
    demo_images: int = Field(64, ge=1)
    """Images in the embedded demo dataset."""
    reference_map: float = Field(53.4, gt=0)
    """mAP the accuracy tiers are fractions of (Ultralytics YOLO11l on COCO)."""
    accuracy_target: Literal["yolo-95", "yolo-99"] = "yolo-95"
    """Tier that decides ``passed``."""


class OracleYoloParams(Params):
    """Parameters of the ``oracle_yolo`` SUT (:class:`~workloads.yolo11.oracle.OracleYoloSUT`)."""

    shift_px: float = 0.0
    """Pixels added to x and y of every box (0 = exact boxes, mAP 100 %)."""
    score: float = Field(1.0, ge=0, le=1)
    """Confidence written for every box."""
    max_batch: int = Field(64, ge=1)
    """Samples per Offline call."""
    max_inflight: int = Field(0, ge=0)
    """Concurrent Offline calls (0 = no cap)."""
    workload_params: dict[str, Any] | None = None
    """Workload params for the library when the run context carries none (direct use in tests)."""
