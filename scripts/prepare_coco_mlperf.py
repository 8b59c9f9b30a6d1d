#!/usr/bin/env python3
"""Build the MLPerf YOLO11 dataset (COCO val2017 "safe" subset, 1525 images) from a local COCO.

MLPerf v6.0 evaluates YOLO11 on the val2017 images whose licence allows commercial
redistribution. This script reproduces that subset from a local COCO 2017 download:

* with ``--image-ids FILE``: exactly the listed images (one id per line, or comma/space separated,
  or a JSON list; COCO file names such as ``000000000139.jpg`` are accepted too);
* without it: the MLPerf filter, i.e. images whose licence URL contains one of
  ``creativecommons.org/licenses/by/``, ``.../by-sa/``, ``.../by-nd``, ``flickr.com/commons/usage``
  or ``www.usa.gov``.

Either way the images keep the order of the original annotation file, because the sample index
(``qsl_idx``) of the benchmark is the position in the ``images`` list. Output layout (what
``raybench run --workload yolo11 --set workload.data_dir=OUT`` and the official
``accuracy-coco.py --coco-dir OUT`` expect)::

    OUT/annotations/instances_val2017.json   # images, annotations filtered; info, licenses, categories kept
    OUT/val2017_safe/<file_name>             # symlinks (default), copies or hard links

Example:
    python scripts/prepare_coco_mlperf.py --coco-dir ~/data/coco --out ~/data/coco_safe
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SAFE_LICENSE_KEYWORDS = (
    "creativecommons.org/licenses/by/",
    "creativecommons.org/licenses/by-sa/",
    "creativecommons.org/licenses/by-nd",
    "flickr.com/commons/usage",
    "www.usa.gov",
)
MLPERF_IMAGE_COUNT = 1525


def read_image_ids(path: Path) -> list[int]:
    """Image ids from a text or JSON file (ints, or COCO file names whose stem is the id)."""
    text = path.read_text()
    try:
        items: Iterable[Any] = json.loads(text)
        if not isinstance(items, list):
            raise ValueError
    except ValueError:
        items = [tok for tok in re.split(r"[\s,]+", text) if tok]
    ids = []
    for item in items:
        stem = Path(str(item)).stem
        if not stem.isdigit():
            raise ValueError(f"--image-ids {path}: not an image id or COCO file name: {item!r}")
        ids.append(int(stem))
    return ids


def select_images(coco: dict[str, Any], image_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The ``images`` entries to keep, in annotation-file order.

    Raises:
        ValueError: a requested id is not in the annotation file.
    """
    if image_ids is not None:
        wanted = set(image_ids)
        known = {img["id"] for img in coco["images"]}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"{len(unknown)} listed image ids are not in the annotations (first: {unknown[0]})"
            )
        return [img for img in coco["images"] if img["id"] in wanted]
    licenses = {lic["id"]: str(lic.get("url", "")).lower() for lic in coco.get("licenses", [])}
    return [
        img
        for img in coco["images"]
        if any(k in licenses.get(img.get("license"), "") for k in SAFE_LICENSE_KEYWORDS)
    ]


def filter_coco(coco: dict[str, Any], images: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A COCO dict restricted to ``images`` and their annotations (other sections kept)."""
    keep = {img["id"] for img in images}
    return {
        "info": coco.get("info", {}),
        "licenses": coco.get("licenses", []),
        "images": list(images),
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco.get("categories", []),
    }


def _place_file(src: Path, dst: Path, mode: str) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Build the MLPerf YOLO11 COCO val2017 safe subset (1525 images) from a local COCO download.",
    )
    p.add_argument("--coco-dir", required=True, type=Path, help="COCO root holding val2017/ and annotations/")
    p.add_argument("--out", required=True, type=Path, help="output root (annotations/ and val2017_safe/)")
    p.add_argument(
        "--image-ids",
        type=Path,
        default=None,
        help="file listing the image ids to keep (default: licence filter)",
    )
    p.add_argument(
        "--annotations",
        default="annotations/instances_val2017.json",
        help="annotation file, relative to --coco-dir",
    )
    p.add_argument("--images", default="val2017", help="image folder, relative to --coco-dir")
    p.add_argument(
        "--mode", choices=("symlink", "copy", "hardlink"), default="symlink", help="how images are placed"
    )
    p.add_argument(
        "--expect",
        type=int,
        default=MLPERF_IMAGE_COUNT,
        help="required image count (0 = accept any; default 1525)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ann_path = args.coco_dir / args.annotations
    src_dir = args.coco_dir / args.images
    if not ann_path.is_file():
        raise SystemExit(f"error: annotations file not found: {ann_path}")
    if not src_dir.is_dir():
        raise SystemExit(f"error: image folder not found: {src_dir}")
    coco = json.loads(ann_path.read_text())
    try:
        ids = read_image_ids(args.image_ids) if args.image_ids else None
        images = select_images(coco, ids)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.expect and len(images) != args.expect:
        raise SystemExit(
            f"error: selected {len(images)} images, expected {args.expect} (use --expect 0 to accept)"
        )
    missing = [img["file_name"] for img in images if not (src_dir / img["file_name"]).is_file()]
    if missing:
        raise SystemExit(f"error: {len(missing)} images missing in {src_dir} (first: {missing[0]})")

    out_images = args.out / "val2017_safe"
    out_images.mkdir(parents=True, exist_ok=True)
    for img in images:
        _place_file(src_dir / img["file_name"], out_images / img["file_name"], args.mode)
    subset = filter_coco(coco, images)
    out_ann = args.out / "annotations" / "instances_val2017.json"
    out_ann.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_ann.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(subset))
    os.replace(tmp, out_ann)
    print(
        f"wrote {len(images)} images ({args.mode}) to {out_images} and "
        f"{len(subset['annotations'])} annotations to {out_ann}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
