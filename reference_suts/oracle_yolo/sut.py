"""Oracle SUT for yolo11: ground-truth boxes through the same payload encoder as the real SUT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raybench.core.protocols import Query, Response, SUTContext
from workloads.yolo11.accuracy import encode_detections
from workloads.yolo11.categories import COCO_91_TO_80

__all__ = ["OracleYoloSUT"]


class OracleYoloSUT:
    """Answers each sample with the annotation boxes of its image.

    The boxes go through :func:`workloads.yolo11.accuracy.encode_detections` (normalised by the
    annotation's height and width), so the oracle exercises exactly the payload path of
    ``ultralytics_yolo``. Crowd annotations and categories outside the 80 detector classes are
    skipped, as a detector would never output them.

    Params:
        shift_px: pixels added to x and y of every box (0 = exact boxes, mAP 100 %).
        score: confidence written for every box.
        workload_params: workload params used to build the sample library when the run context
            does not carry them (tests); ``SUTContext.workload_params`` wins otherwise.
        max_batch / max_inflight: Offline batching hints for the harness.

    Example:
        >>> sut = OracleYoloSUT({"shift_px": 4})
        >>> await sut.start(SUTContext("yolo11", "Offline", "AccuracyOnly", {"data_dir": None}))
    """

    name = "oracle_yolo"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.shift_px = float(params.get("shift_px") or 0.0)
        self.score = float(params.get("score", 1.0))
        self.max_batch = int(params.get("max_batch") or 64)
        self.max_inflight = int(params.get("max_inflight") or 0)
        self._workload_params = dict(params.get("workload_params") or {})
        self._library: Any = None

    async def start(self, ctx: SUTContext) -> None:
        """Build the sample library (annotations only; no image is decoded)."""
        from workloads.yolo11.dataset import load_library

        self._library = load_library({**self._workload_params, **(ctx.workload_params or {})})

    def answer(self, index: int) -> bytes:
        """The payload for qsl index ``index``."""
        info = self._library.image_info(index)
        anns = [
            a
            for a in self._library.ground_truth(index)
            if not a.get("iscrowd") and a["category_id"] in COCO_91_TO_80
        ]
        boxes = np.array(
            [
                [x + self.shift_px, y + self.shift_px, x + w + self.shift_px, y + h + self.shift_px]
                for x, y, w, h in (a["bbox"] for a in anns)
            ],
            dtype=np.float64,
        ).reshape(-1, 4)
        classes = [COCO_91_TO_80[a["category_id"]] for a in anns]
        return encode_detections(
            index, boxes, np.full(len(anns), self.score), classes, int(info["height"]), int(info["width"])
        )

    async def issue(self, query: Query) -> Sequence[Response]:
        """One :class:`Response` per sample, in query order."""
        if self._library is None:
            raise RuntimeError("oracle_yolo: issue() before start()")
        return [Response(data=self.answer(int(i))) for i in query.indices]

    async def stop(self) -> None:
        """Drop the library."""
        self._library = None
