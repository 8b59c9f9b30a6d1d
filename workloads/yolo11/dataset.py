"""COCO-format sample library for the YOLO11 workload (MLPerf's QSL for ``yolo-95``/``yolo-99``).

Sample index ``i`` is the position of an image in the annotation file's ``images`` list, exactly
as in the MLPerf reference (its ``Coco`` class keeps annotation-file order, and the accuracy
script looks images up by that position, not by ``image_id``). Unlike the reference, which
silently skips images missing on disk (shifting every later index and corrupting the score), a
missing image is an error here.

``load()`` decodes the requested images once into ``uint8`` HWC BGR arrays (what
``ultralytics.YOLO.predict`` takes for numpy input) and keeps them in memory, so decoding never
happens inside the timed region; ``get()`` hands out a :class:`CocoSample`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workloads.yolo11 import demo

__all__ = ["CocoLibrary", "CocoSample", "load_library"]

#: MLPerf reference QSL: performance sample count = min(total, 500)
#: (mlperf.conf then overrides it to 64 for ``yolo``).
DEFAULT_PERFORMANCE_COUNT = 500
_IMAGE_DIR_CANDIDATES = ("val2017_safe", "val2017", "images")


@dataclass(frozen=True, slots=True)
class CocoSample:
    """One loaded sample, as put in :attr:`Query.samples`.

    Attributes:
        index: the qsl index (position in the annotation file's ``images`` list).
        image: decoded image, ``uint8`` array of shape ``(h, w, 3)`` in BGR order.
        orig_hw: ``(h, w)`` of the decoded image; boxes are normalised by these.
        image_id: COCO ``image_id`` (for debugging only; the accuracy log uses ``index``).
    """

    index: int
    image: np.ndarray
    orig_hw: tuple[int, int]
    image_id: int


class CocoLibrary:
    """Sample library over a COCO instances annotation file and an image folder.

    Args:
        annotations: path of the COCO instances JSON (``images``, ``annotations``, ``categories``).
        images_dir: folder holding the files named by ``images[*].file_name``.
        count: use only the first ``count`` images (``None`` = all), like the reference ``--count``.
        performance_count: override of the performance sample count (default ``min(total, 500)``).
        name: library name reported to the harness.

    Raises:
        FileNotFoundError: annotation file, image folder or an image file is missing.
        ValueError: the annotation file is not a COCO instances file.

    Example:
        >>> lib = CocoLibrary("coco_safe/annotations/instances_val2017.json", "coco_safe/val2017_safe")
        >>> lib.load([0, 1]); lib.get(0).image.shape
        (480, 640, 3)
    """

    def __init__(
        self,
        annotations: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        count: int | None = None,
        performance_count: int | None = None,
        name: str = "yolo11",
    ) -> None:
        self.name = name
        self.annotations_path = Path(annotations)
        self.images_dir = Path(images_dir)
        if not self.annotations_path.is_file():
            raise FileNotFoundError(f"yolo11: annotations file not found: {self.annotations_path}")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"yolo11: images folder not found: {self.images_dir}")
        try:
            dataset = json.loads(self.annotations_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"yolo11: annotations file is not valid JSON: {self.annotations_path} ({exc})"
            ) from None
        if not isinstance(dataset, dict) or not all(
            isinstance(dataset.get(k), list) for k in ("images", "annotations", "categories")
        ):
            raise ValueError(
                f"yolo11: annotations file {self.annotations_path} lacks the COCO lists 'images', "
                "'annotations' and 'categories'"
            )
        for k, img in enumerate(dataset["images"]):
            if not isinstance(img, dict) or not all(f in img for f in ("id", "file_name", "height", "width")):
                raise ValueError(
                    f"yolo11: {self.annotations_path}: images[{k}] needs 'id', 'file_name', 'height', 'width'"
                )
        #: The whole parsed annotation file (ground truth for pycocotools).
        self.coco_dataset: dict[str, Any] = dataset
        images = dataset["images"]
        if count is not None:
            if count < 1:
                raise ValueError(f"yolo11: count must be >= 1, got {count}")
            images = images[:count]
        #: ``images`` entries in qsl-index order.
        self.images: list[dict[str, Any]] = list(images)
        missing = [
            img["file_name"] for img in self.images if not (self.images_dir / img["file_name"]).is_file()
        ]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"yolo11: image file not found: {self.images_dir / missing[0]}{more}")
        if performance_count is not None and performance_count < 1:
            raise ValueError(f"yolo11: performance_count must be >= 1, got {performance_count}")
        self._performance_count = min(
            len(self.images),
            performance_count if performance_count is not None else DEFAULT_PERFORMANCE_COUNT,
        )
        self._loaded: dict[int, CocoSample] = {}
        self._gt_by_image: dict[int, list[dict[str, Any]]] | None = None

    # -- SampleLibrary protocol -------------------------------------------------------------------

    @property
    def total_count(self) -> int:
        """Number of images (after ``count``)."""
        return len(self.images)

    @property
    def performance_count(self) -> int:
        """``min(total, 500)`` like the reference QSL, unless overridden."""
        return self._performance_count

    def load(self, indices: Sequence[int]) -> None:
        """Decode the images at ``indices`` (BGR ``uint8``) and keep them in memory.

        Already loaded indices are not decoded again.

        Raises:
            IndexError: an index is outside ``[0, total_count)``.
            ValueError: an image file cannot be decoded.
        """
        import cv2  # lazy: keeps `import workloads.yolo11` cheap

        for i in indices:
            i = int(i)
            if i in self._loaded:
                continue
            info = self._info(i)
            path = self.images_dir / info["file_name"]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"yolo11: cannot decode image file: {path}")
            h, w = image.shape[:2]
            self._loaded[i] = CocoSample(
                index=i, image=image, orig_hw=(int(h), int(w)), image_id=int(info["id"])
            )

    def unload(self, indices: Sequence[int]) -> None:
        """Free the decoded images at ``indices`` (unknown or not loaded indices are ignored)."""
        for i in indices:
            self._loaded.pop(int(i), None)

    def get(self, index: int) -> CocoSample:
        """The loaded sample at ``index``.

        Raises:
            KeyError: the sample was not loaded with :meth:`load`.
        """
        try:
            return self._loaded[int(index)]
        except KeyError:
            raise KeyError(f"yolo11: sample {index} is not loaded (call load() first)") from None

    # -- helpers for accuracy scoring and the oracle SUT ------------------------------------------

    @property
    def loaded_count(self) -> int:
        """How many samples are currently decoded in memory."""
        return len(self._loaded)

    def image_info(self, index: int) -> dict[str, Any]:
        """The ``images`` entry of qsl index ``index``."""
        return self._info(int(index))

    def ground_truth(self, index: int) -> list[dict[str, Any]]:
        """The annotation dicts (``bbox`` = ``[x, y, w, h]`` in pixels) of the image at ``index``."""
        if self._gt_by_image is None:
            by_image: dict[int, list[dict[str, Any]]] = {}
            for ann in self.coco_dataset["annotations"]:
                by_image.setdefault(ann["image_id"], []).append(ann)
            self._gt_by_image = by_image
        return list(self._gt_by_image.get(self._info(int(index))["id"], []))

    def _info(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.images):
            raise IndexError(f"yolo11: sample index {index} out of range [0, {len(self.images)})")
        return self.images[index]


def _resolve(root: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(os.path.expanduser(os.fspath(value)))
    return path if path.is_absolute() else root / path


def load_library(params: Mapping[str, Any]) -> CocoLibrary:
    """Workload factory named by ``WORKLOAD.library``.

    Params (all optional):
        data_dir: dataset root; unset/None = the embedded demo (generated once into the cache).
        annotations: annotation JSON, relative to ``data_dir`` unless absolute
            (default ``annotations/instances_val2017.json``).
        images: image folder, relative to ``data_dir`` unless absolute (default: the first of
            ``val2017_safe``, ``val2017``, ``images`` that exists).
        count: use only the first N images.
        performance_count: override ``min(total, 500)``.
        demo_images: number of demo images (default 64).
    """
    data_dir = params.get("data_dir")
    if data_dir in (None, ""):
        root = demo.ensure_demo_dataset(int(params.get("demo_images") or 64))
    else:
        root = Path(os.path.expanduser(os.fspath(data_dir)))
        if not root.is_dir():
            raise FileNotFoundError(f"yolo11: data_dir not found: {root}")
    annotations = _resolve(root, params.get("annotations") or demo.ANNOTATIONS_REL)
    if params.get("images"):
        images_dir = _resolve(root, params["images"])
    else:
        found = [root / c for c in _IMAGE_DIR_CANDIDATES if (root / c).is_dir()]
        if not found:
            raise FileNotFoundError(
                f"yolo11: no image folder in {root} (looked for {', '.join(_IMAGE_DIR_CANDIDATES)}; set 'images')"
            )
        images_dir = found[0]
    count = params.get("count")
    perf = params.get("performance_count")
    return CocoLibrary(
        annotations,
        images_dir,
        count=int(count) if count is not None else None,
        performance_count=int(perf) if perf is not None else None,
    )
