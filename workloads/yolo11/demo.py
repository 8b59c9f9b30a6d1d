"""Deterministic generator of a small COCO-format detection dataset (the embedded demo).

Why: the machines that run CI have no COCO download and no internet, yet the whole YOLO11 path
(sample library -> SUT -> accuracy log -> pycocotools mAP) must run end to end. The demo writes
images with filled rectangles and ellipses of a few COCO classes and annotates them with their
exact pixel boxes, so an oracle SUT that echoes the annotations scores mAP = 100 %.

Layout written under ``root`` (same as the MLPerf ``coco_safe`` folder)::

    annotations/instances_val2017.json
    val2017_safe/000000xxxxxx.png

Details chosen to catch bugs rather than to look pretty:

* image sizes cycle through landscape and portrait shapes (h != w, varying), so a swapped
  normalisation (dividing x by h) changes the score;
* image ids are not the positions in ``images`` (id = 90000 - 7 * index), so confusing
  ``qsl_idx`` with ``image_id`` fails;
* category ids are from the 91-id set (e.g. stop sign = 13, dog = 18), so a missing 80 -> 91
  translation fails.

Every field MLPerf's ``vision/classification_and_detection/tools/accuracy-coco.py`` reads is
present, so that script runs on the demo unchanged: ``images[*]`` have ``id``, ``file_name``,
``height``, ``width`` and ``coco_url`` (printed by ``--verbose`` for an image without detections;
here the image's path relative to the dataset root, since the pictures are synthetic), plus
``flickr_url``/``date_captured``/``license`` like real COCO entries; annotations carry ``id``,
``image_id``, ``category_id``, ``bbox``, ``area`` and ``iscrowd`` (what ``COCOeval`` reads).

Randomness comes from :class:`random.Random` (its ``random()`` stream is stable across Python
versions) and shapes are rasterised with numpy arithmetic, so the annotations do not depend on
the OpenCV version.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.cache import build_once, cache_root
from workloads.yolo11.categories import COCO_80_TO_91, COCO_NAMES, coco_categories

__all__ = [
    "ANNOTATIONS_REL",
    "DEMO_VERSION",
    "IMAGES_REL",
    "build_demo",
    "demo_cache_dir",
    "ensure_demo_dataset",
    "generate_demo",
]

DEMO_VERSION = "v2"  # v2: images carry coco_url / flickr_url / date_captured
ANNOTATIONS_REL = "annotations/instances_val2017.json"
IMAGES_REL = "val2017_safe"

#: (height, width) of successive images; COCO-like landscape and portrait shapes.
_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (640, 480), (427, 640), (360, 480))
#: Detector classes (0..79) drawn in the demo, with a fixed BGR colour each.
_CLASSES: dict[int, tuple[int, int, int]] = {
    0: (40, 40, 220),  # person
    2: (220, 60, 40),  # car
    11: (30, 200, 230),  # stop sign
    16: (200, 40, 200),  # dog
    32: (240, 240, 240),  # sports ball
    41: (10, 120, 10),  # cup
    62: (20, 20, 20),  # tv
}
_MIN_SIDE = 24
_MARGIN = 4  # free pixels kept between objects, so no object hides part of another
_DATE_CAPTURED = "2026-01-01 00:00:00"  # fixed, so the annotation bytes are reproducible


def _image_id(index: int) -> int:
    return 90000 - 7 * index


def _place(
    rng: random.Random, h: int, w: int, taken: list[tuple[int, int, int, int]]
) -> tuple[int, int, int, int] | None:
    """Pick a free box ``(x0, y0, bw, bh)`` not within ``_MARGIN`` px of boxes in ``taken``."""
    for _ in range(50):
        bw = _MIN_SIDE + int(rng.random() * (w // 3 - _MIN_SIDE))
        bh = _MIN_SIDE + int(rng.random() * (h // 3 - _MIN_SIDE))
        x0 = int(rng.random() * (w - bw))
        y0 = int(rng.random() * (h - bh))
        if all(
            x0 + bw + _MARGIN <= tx
            or tx + tw + _MARGIN <= x0
            or y0 + bh + _MARGIN <= ty
            or ty + th + _MARGIN <= y0
            for tx, ty, tw, th in taken
        ):
            return x0, y0, bw, bh
    return None


def _shape_mask(kind: str, x0: int, y0: int, bw: int, bh: int, h: int, w: int) -> np.ndarray:
    """Boolean mask of a filled rectangle or of the ellipse inscribed in the box (pixel centres)."""
    mask = np.zeros((h, w), dtype=bool)
    if kind == "rect":
        mask[y0 : y0 + bh, x0 : x0 + bw] = True
        return mask
    yy, xx = np.mgrid[y0 : y0 + bh, x0 : x0 + bw].astype(np.float64)
    cx, cy = x0 + (bw - 1) / 2.0, y0 + (bh - 1) / 2.0
    inside = ((xx - cx) / (bw / 2.0)) ** 2 + ((yy - cy) / (bh / 2.0)) ** 2 <= 1.0
    mask[y0 : y0 + bh, x0 : x0 + bw] = inside
    return mask


def build_demo(n_images: int = 64, seed: int = 0) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Build the demo annotations and images in memory.

    Args:
        n_images: number of images (>= 1).
        seed: RNG seed; the same ``(n_images, seed)`` always gives the same output.

    Returns:
        ``(coco_dict, images)``: a COCO instances dict and the BGR ``uint8`` HWC images in the order
        of ``coco_dict["images"]``. Each image holds 1-4 non-overlapping objects; the ``bbox`` of an
        annotation is the exact pixel extent ``[x0, y0, width, height]`` of the painted shape.
    """
    if n_images < 1:
        raise ValueError(f"yolo11 demo: n_images must be >= 1, got {n_images}")
    rng = random.Random(seed)
    classes = sorted(_CLASSES)
    images_meta: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    pixels: list[np.ndarray] = []
    for index in range(n_images):
        h, w = _SIZES[index % len(_SIZES)]
        image_id = _image_id(index)
        ramp_y = np.linspace(30, 150, h, dtype=np.float64)[:, None]
        ramp_x = np.linspace(60, 140, w, dtype=np.float64)[None, :]
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[..., 0] = (ramp_y + 0 * ramp_x).astype(np.uint8)
        img[..., 1] = (0 * ramp_y + ramp_x).astype(np.uint8)
        img[..., 2] = (ramp_y / 2 + ramp_x / 2).astype(np.uint8)
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(1 + int(rng.random() * 4)):
            box = _place(rng, h, w, taken)
            cls = classes[int(rng.random() * len(classes))]
            kind = "rect" if rng.random() < 0.5 else "ellipse"
            if box is None:
                continue
            taken.append(box)
            mask = _shape_mask(kind, *box, h, w)
            img[mask] = _CLASSES[cls]
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            x1, y1 = float(x0 + bw), float(y0 + bh)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": COCO_80_TO_91[cls],
                    "bbox": [float(x0), float(y0), float(bw), float(bh)],
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                    "segmentation": [[float(x0), float(y0), x1, float(y0), x1, y1, float(x0), y1]],
                    "demo_shape": f"{kind} {COCO_NAMES[cls]}",
                }
            )
        file_name = f"{image_id:012d}.png"
        images_meta.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": h,
                "width": w,
                "license": 4,
                "coco_url": f"{IMAGES_REL}/{file_name}",
                "flickr_url": f"{IMAGES_REL}/{file_name}",
                "date_captured": _DATE_CAPTURED,
            }
        )
        pixels.append(img)
    coco = {
        "info": {
            "description": f"raybench yolo11 demo {DEMO_VERSION} (synthetic shapes)",
            "version": DEMO_VERSION,
        },
        "licenses": [
            {"id": 4, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/2.0/"}
        ],
        "images": images_meta,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    return coco, pixels


def generate_demo(root: str | os.PathLike[str], n_images: int = 64, seed: int = 0) -> Path:
    """Write the demo dataset under ``root`` (created if missing) and return ``root``.

    The annotations are written as canonical JSON (sorted keys), so their bytes and hash are
    reproducible. Images are lossless PNG, so decoding gives back exactly the generated pixels.
    """
    import cv2  # lazy: keeps `import workloads.yolo11` cheap

    root = Path(root)
    coco, pixels = build_demo(n_images, seed)
    (root / IMAGES_REL).mkdir(parents=True, exist_ok=True)
    for meta, img in zip(coco["images"], pixels, strict=True):
        path = root / IMAGES_REL / meta["file_name"]
        if not cv2.imwrite(str(path), img):
            raise OSError(f"yolo11 demo: could not write image {path}")
    ann_path = root / ANNOTATIONS_REL
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps(coco, sort_keys=True, separators=(",", ":")))
    return root


def demo_cache_dir(n_images: int = 64, seed: int = 0) -> Path:
    """``$RAYBENCH_CACHE/yolo11-demo-<version>[-n<N>][-s<seed>]`` (default cache ``~/.cache/raybench``)."""
    cache = cache_root()
    suffix = ("" if n_images == 64 else f"-n{n_images}") + ("" if seed == 0 else f"-s{seed}")
    return cache / f"yolo11-demo-{DEMO_VERSION}{suffix}"


def ensure_demo_dataset(n_images: int = 64, seed: int = 0) -> Path:
    """Return the cached demo dataset root, generating it on first use.

    Generation goes to a temporary sibling directory that is then renamed into place with
    :func:`os.replace`, so concurrent load-generator shards never see a half-written dataset;
    if another process won the race, its copy is used and ours is discarded.
    """
    final = demo_cache_dir(n_images, seed)
    return build_once(final.name, lambda d: generate_demo(d, n_images, seed), ANNOTATIONS_REL, final.parent)
