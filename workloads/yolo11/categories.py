"""COCO category tables: the 80 contiguous detector classes and their 91-set category ids.

Detectors trained with Ultralytics number the COCO classes 0..79. The COCO annotation files (and
therefore pycocotools and the MLPerf accuracy script, run without ``--use-inv-map``) use the
original 91-id numbering, which has 11 unused ids (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91).
The MLPerf YOLO reference translates every detection with the official 80 -> 91 table below
before it is written to the accuracy log; so do we. The tables live in
:mod:`workloads.yolo11.payload` (they are part of the payload contract) and are re-exported here.
"""

from __future__ import annotations

from workloads.yolo11.payload import COCO_80_TO_91, COCO_91_TO_80

__all__ = ["COCO_80_TO_91", "COCO_91_TO_80", "COCO_NAMES", "coco_categories"]

#: Class names in detector order (index = class 0..79).
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

assert len(COCO_80_TO_91) == len(COCO_NAMES) == 80


def coco_categories() -> list[dict[str, object]]:
    """The ``categories`` list of a COCO annotation file (80 entries, 91-set ids)."""
    return [{"id": cat, "name": name} for cat, name in zip(COCO_80_TO_91, COCO_NAMES, strict=True)]
