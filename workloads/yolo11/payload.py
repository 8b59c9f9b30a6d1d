"""The yolo11 response payload: what a SUT returns per image and the scorer reads back.

Native float32 (little-endian on every supported platform), 7 values per detected box::

    [qsl_idx, ymin, xmin, ymax, xmax, score, category_id]

with ``ymin = y1 / H``, ``xmin = x1 / W``, ``ymax = y2 / H``, ``xmax = x2 / W`` for the pixel box
``(x1, y1, x2, y2)`` of an image of original size ``H x W``, and ``category_id`` the COCO 91-set id
``COCO_80_TO_91[class]`` of detector class ``class`` (0..79). An image with no box has an empty
payload. This is the MLPerf COCO payload of ``yolo_loadgen.py``.

This module is the contract between SUTs (``reference_suts/ultralytics_yolo``, the oracle) and
the workload's scorer: SUTs import this module and nothing else of ``workloads.yolo11``. It
imports only numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COCO_80_TO_91", "COCO_91_TO_80", "FLOATS_PER_BOX", "decode_payload", "encode_detections"]

FLOATS_PER_BOX = 7

#: ``COCO_80_TO_91[c]`` is the COCO category id of detector class ``c`` (same numbers as the
#: MLPerf reference's table).
COCO_80_TO_91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip

#: Inverse table: COCO category id -> detector class (only the 80 used ids).
COCO_91_TO_80: dict[int, int] = {cat: cls for cls, cat in enumerate(COCO_80_TO_91)}

_MAP_80_TO_91 = np.asarray(COCO_80_TO_91, dtype=np.float32)


def encode_detections(
    qsl_idx: int,
    boxes_xyxy: Any,
    scores: Any,
    classes80: Any,
    orig_h: int,
    orig_w: int,
) -> bytes:
    """Encode one image's detections as the MLPerf COCO payload.

    Divisions are done in float32 like the reference (its boxes come from torch as float32), so the
    bytes equal what ``yolo_loadgen.py`` packs with ``struct.pack("7f", ...)``.

    Args:
        qsl_idx: sample index (written as the first float of every box).
        boxes_xyxy: ``(n, 4)`` pixel boxes ``x1, y1, x2, y2`` in the original image.
        scores: ``(n,)`` confidences.
        classes80: ``(n,)`` detector classes 0..79 (mapped to 91-set ids here).
        orig_h: original image height in pixels.
        orig_w: original image width in pixels.

    Returns:
        ``28 * n`` bytes (empty when ``n == 0``).

    Raises:
        ValueError: shapes disagree, a class is outside 0..79 or a size is not positive.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    conf = np.asarray(scores, dtype=np.float32).reshape(-1)
    cls = np.asarray(classes80).reshape(-1).astype(np.int64)
    n = boxes.shape[0]
    if conf.shape[0] != n or cls.shape[0] != n:
        raise ValueError(
            f"encode_detections: {n} boxes but {conf.shape[0]} scores and {cls.shape[0]} classes"
        )
    if orig_h <= 0 or orig_w <= 0:
        raise ValueError(f"encode_detections: bad original size h={orig_h} w={orig_w}")
    if n == 0:
        return b""
    if cls.min() < 0 or cls.max() >= len(COCO_80_TO_91):
        raise ValueError(f"encode_detections: class outside 0..79 (got {int(cls.min())}..{int(cls.max())})")
    h, w = np.float32(orig_h), np.float32(orig_w)
    out = np.empty((n, FLOATS_PER_BOX), dtype=np.float32)
    out[:, 0] = np.float32(qsl_idx)
    out[:, 1] = boxes[:, 1] / h
    out[:, 2] = boxes[:, 0] / w
    out[:, 3] = boxes[:, 3] / h
    out[:, 4] = boxes[:, 2] / w
    out[:, 5] = conf
    out[:, 6] = _MAP_80_TO_91[cls]
    return out.astype("<f4", copy=False).tobytes()


def decode_payload(data: bytes) -> np.ndarray:
    """Decode a payload into an ``(n, 7)`` float32 array (``n = 0`` for an empty payload).

    Raises:
        ValueError: the length is not a multiple of 28 bytes.
    """
    if len(data) % (4 * FLOATS_PER_BOX):
        raise ValueError(f"yolo11 payload of {len(data)} bytes is not a multiple of 28 (7 float32 per box)")
    return np.frombuffer(data, dtype="<f4").reshape(-1, FLOATS_PER_BOX)
