"""YOLO11 accuracy: the MLPerf COCO detection payload and mAP@[.5:.95] with pycocotools.

Payload: 7 float32 per box ``[qsl_idx, ymin, xmin, ymax, xmax, score, category_id]``, defined
(and encoded/decoded) in :mod:`workloads.yolo11.payload`; its helpers are re-exported here.

Scoring reproduces ``vision/classification_and_detection/tools/accuracy-coco.py`` run without
``--use-inv-map`` (as the YOLO reference requires):

* entries are de-duplicated by qsl index, the first one wins;
* ``qsl_idx`` indexes the annotation file's ``images`` list; boxes are de-normalised with that
  entry's ``height``/``width`` in float32 arithmetic, then turned into ``[x, y, w, h]``;
* an entry with fewer than 7 floats marks its image as evaluated with no detection;
* evaluation covers only the images that appear in the log (``params.imgIds``), so a partial
  accuracy run scores the images it ran;
* ``mAP = 100 * stats[0]`` (AP at IoU .50:.95, area all, 100 detections), printed as
  ``mAP=NN.NNN%`` which the submission checker reads with ``.*(?:mAP=|'Total':)\\s*([\\d.]+)``.

Targets (submission checker, v6.0): ``yolo-95`` = 0.95 x 53.4, ``yolo-99`` = 0.99 x 53.4 (53.4 is
the Ultralytics YOLO11l COCO mAP); ``params["reference_map"]`` replaces 53.4 and
``params["accuracy_target"]`` (default ``"yolo-95"``) picks the tier that decides ``passed``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raybench.core.spec import AccuracyResult
from workloads.yolo11.payload import FLOATS_PER_BOX, decode_payload, encode_detections

__all__ = [
    "FLOATS_PER_BOX",
    "REFERENCE_MAP",
    "decode_payload",
    "encode_detections",
    "mean_average_precision",
    "score",
    "targets_for",
]

#: Ultralytics YOLO11l mAP@[.5:.95] on COCO val2017, the MLPerf reference accuracy.
REFERENCE_MAP = 53.4
_TIERS = {"yolo-95": 0.95, "yolo-99": 0.99}


def targets_for(params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``{"yolo-95": 0.95 * ref, "yolo-99": 0.99 * ref}`` with ``ref = params["reference_map"]`` (53.4)."""
    ref = float((params or {}).get("reference_map") or REFERENCE_MAP)
    return {tier: ref * frac for tier, frac in _TIERS.items()}


def _detections(
    entries: Sequence[tuple[int, bytes]], images: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], set[int], dict[str, int]]:
    """Turn accuracy-log entries into pycocotools result dicts (reference semantics)."""
    detections: list[dict[str, Any]] = []
    image_ids: set[int] = set()
    seen: set[int] = set()
    counts = {"entries": len(entries), "duplicates": 0, "no_result_images": 0, "idx_mismatch": 0}
    for qsl_idx, data in entries:
        idx = int(qsl_idx)
        if idx in seen:
            counts["duplicates"] += 1
            continue
        seen.add(idx)
        if not 0 <= idx < len(images):
            raise ValueError(
                f"yolo11 accuracy: qsl_idx {idx} is outside the annotation images [0, {len(images)})"
            )
        image = images[idx]
        try:
            boxes = decode_payload(bytes(data))
        except ValueError as exc:
            raise ValueError(f"yolo11 accuracy: qsl_idx {idx}: {exc}") from None
        image_ids.add(int(image["id"]))
        if boxes.shape[0] == 0:
            counts["no_result_images"] += 1
            continue
        counts["idx_mismatch"] += int(np.count_nonzero(boxes[:, 0].astype(np.int64) != idx))
        height, width = int(image["height"]), int(image["width"])
        ymin = boxes[:, 1] * np.float32(height)
        xmin = boxes[:, 2] * np.float32(width)
        ymax = boxes[:, 3] * np.float32(height)
        xmax = boxes[:, 4] * np.float32(width)
        bw, bh = xmax - xmin, ymax - ymin
        for k in range(boxes.shape[0]):
            detections.append(
                {
                    "image_id": int(image["id"]),
                    "category_id": int(boxes[k, 6]),
                    "bbox": [float(xmin[k]), float(ymin[k]), float(bw[k]), float(bh[k])],
                    "score": float(boxes[k, 5]),
                }
            )
    counts["images"] = len(image_ids)
    return detections, image_ids, counts


def mean_average_precision(
    entries: Sequence[tuple[int, bytes]], coco_dataset: Mapping[str, Any], images: Sequence[Mapping[str, Any]]
) -> tuple[list[float], dict[str, int], str]:
    """COCO bbox evaluation of accuracy-log entries.

    Args:
        entries: ``(qsl_idx, payload)`` pairs.
        coco_dataset: the parsed ground-truth annotation file.
        images: the ``images`` entries in qsl-index order.

    Returns:
        ``(stats, counts, summary)``: the 12 COCOeval ``stats`` (fractions; all 0 when the log has no
        detection at all, since pycocotools cannot load an empty result list), bookkeeping counts,
        and the text COCOeval printed (its stdout is captured, not shown).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    detections, image_ids, counts = _detections(entries, images)
    if not detections:
        return [0.0] * 12, counts, ""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gt = COCO()
        # Shallow-copy the annotation dicts: COCOeval writes an 'ignore' key into them.
        gt.dataset = {**coco_dataset, "annotations": [dict(a) for a in coco_dataset["annotations"]]}
        gt.createIndex()
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iouType="bbox")
        # Same order as the reference's list(set): accumulate() breaks score ties by image order.
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    summary = "\n".join(line for line in buf.getvalue().splitlines() if line.lstrip().startswith("Average"))
    return [float(s) for s in ev.stats], counts, summary


def score(entries: Sequence[tuple[int, bytes]], library: Any, params: Mapping[str, Any]) -> AccuracyResult:
    """Workload scorer named by ``WORKLOAD.accuracy``.

    Args:
        entries: ``(qsl_idx, data)`` read back from ``mlperf_log_accuracy.json``.
        library: the workload's :class:`~workloads.yolo11.dataset.CocoLibrary` (a fresh one is built
            from ``params`` if it is something else).
        params: workload params; ``reference_map`` (default 53.4) and ``accuracy_target``
            (``"yolo-95"`` default, or ``"yolo-99"``) are read here.

    Returns:
        :class:`~raybench.core.spec.AccuracyResult` with metrics ``mAP`` (percent), ``AP50``,
        ``AP75`` (percent) and the counts; ``passed`` compares the printed (3-decimal) mAP with the
        chosen tier, as the submission checker does.
    """
    if not hasattr(library, "coco_dataset"):
        from workloads.yolo11.dataset import load_library

        library = load_library(params)
    tier = str(params.get("accuracy_target") or "yolo-95")
    targets = targets_for(params)
    if tier not in targets:
        raise ValueError(f"yolo11: accuracy_target must be one of {sorted(targets)}, got {tier!r}")
    stats, counts, summary = mean_average_precision(entries, library.coco_dataset, library.images)
    m_ap = 100.0 * stats[0]
    printed = f"{m_ap:.3f}"
    passed = float(printed) >= targets[tier]
    lines = [summary] if summary else []
    lines.append(f"mAP={printed}%")
    lines += [
        f"found {counts['entries']} results",
        f"found {counts['images']} images",
        f"found {counts['no_result_images']} images with no results",
        f"ignored {counts['duplicates']} dupes",
    ]
    if counts["idx_mismatch"]:
        lines.append(f"WARNING: {counts['idx_mismatch']} boxes carry a qsl index different from their entry")
    for name, value in targets.items():
        verdict = "PASS" if float(printed) >= value else "FAIL"
        lines.append(f"target {name}: {value:.3f}% -> {verdict}")
    metrics = {
        "mAP": m_ap,
        "AP50": 100.0 * stats[1],
        "AP75": 100.0 * stats[2],
        **{k: float(v) for k, v in counts.items()},
    }
    return AccuracyResult(
        metrics=metrics, accuracy_txt="\n".join(lines) + "\n", passed=passed, targets={"mAP": targets[tier]}
    )
