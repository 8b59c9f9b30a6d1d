"""Oracle SUT for yolo11: ground-truth boxes through the same payload encoder as the real SUT.

Test-only (registered as ``oracle_yolo`` by ``workloads/yolo11/__init__.py``): it needs no model
and decodes no image. Unshifted it must score mAP = 100 %; ``shift_px`` moves every box to get a
known lower score (on the embedded demo: 4 px -> 59.747 %, 8 px -> 26.685 %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from workloads.yolo11.params import OracleYoloParams
from workloads.yolo11.payload import COCO_91_TO_80, encode_detections

__all__ = ["OracleYoloSUT"]


class OracleYoloSUT:
    """Answers each sample with the annotation boxes of its image.

    The boxes go through :func:`workloads.yolo11.payload.encode_detections` (normalised by the
    annotation's height and width), so the oracle exercises exactly the payload path of
    ``ultralytics_yolo``. Crowd annotations and categories outside the 80 detector classes are
    skipped, as a detector would never output them.

    Params: see :class:`~workloads.yolo11.params.OracleYoloParams`.

    Example:
        >>> sut = OracleYoloSUT({"shift_px": 4})
        >>> await sut.start(SUTContext("yolo11", "Offline", "AccuracyOnly", {"data_dir": None}))
    """

    name = "oracle_yolo"

    def __init__(self, params: Mapping[str, Any]) -> None:
        p = parse_params(OracleYoloParams, params, "sut.params")
        self.shift_px = p.shift_px
        self.score = p.score
        self.max_batch = p.max_batch
        self.max_inflight = p.max_inflight
        self._workload_params = dict(p.workload_params or {})
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
