"""Parameters of the ultralytics_yolo SUT."""

from __future__ import annotations

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["UltralyticsYoloParams"]


class UltralyticsYoloParams(Params):
    """Parameters of :class:`~reference_suts.ultralytics_yolo.sut.UltralyticsYoloSUT`."""

    weights: str = "yolo11n.yaml"
    """A local weights file (``.pt``, ...) or a model YAML (random init); hub names are refused."""
    imgsz: int = Field(640, ge=1)
    """Inference size in pixels."""
    conf: float = Field(0.001, ge=0, le=1)
    """Confidence threshold (MLPerf reference: low, so mAP sees the whole PR curve)."""
    iou: float = Field(0.7, ge=0, le=1)
    """NMS IoU threshold (ultralytics' default; the reference does not set it)."""
    max_det: int = Field(300, ge=1)
    """Detections kept per image."""
    device: str | None = None
    """Torch device (``None`` = ``cuda:0`` if available, else ``cpu``)."""
    half: bool = False
    """FP16 inference."""
    num_threads: int | None = Field(None, ge=1)
    """Torch threads (``None`` = the CPUs this process may use, see ``default_num_threads``)."""
    max_batch: int = Field(8, ge=1)
    """Images per predict call (Offline batch size)."""
    max_inflight: int = Field(2, ge=0)
    """Concurrent Offline calls: one batch running, one queued, so the worker never idles."""
    warmup_iters: int = Field(1, ge=1)
    """Warm-up predicts at start."""
