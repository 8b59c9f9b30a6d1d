"""The demo set works with MLPerf's COCO accuracy script, and our scorer gives that script's mAP.

The official script is ``vision/classification_and_detection/tools/accuracy-coco.py`` (run without
``--use-inv-map`` for YOLO). :func:`official_flow` below is our own re-implementation of its flow,
written from its documented behaviour, not a copy: read ``annotations/instances_val2017.json`` with
pycocotools, walk the JSON accuracy log in order, skip repeated ``qsl_idx``, de-normalise each box
with the ``height``/``width`` of ``images[qsl_idx]``, write the detections to a JSON file and load
them back with ``COCO.loadRes``, then run ``COCOeval`` on the logged images only.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from raybench.core.logs.accuracy_log import write_accuracy_log
from workloads.yolo11.accuracy import score
from workloads.yolo11.dataset import load_library
from workloads.yolo11.demo import ANNOTATIONS_REL, generate_demo
from workloads.yolo11.tests.test_yolo11_accuracy import oracle_entries

pytest.importorskip("pycocotools")

# What the official script (and the pycocotools calls it makes) read from the annotation file.
IMAGE_FIELDS = ("id", "file_name", "height", "width", "coco_url")
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
CATEGORY_FIELDS = ("id", "name")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("yolo11-demo"))


def official_flow(coco_dir: Path, log_path: Path, out_dir: Path) -> tuple[float, list[str]]:
    """Our re-implementation of accuracy-coco.py's flow; returns ``(mAP %, verbose lines)``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_dir / "annotations" / "instances_val2017.json"))
    image_map = gt.dataset["images"]  # qsl_idx indexes this list (not the image id)
    results = json.loads(log_path.read_text())
    detections, image_ids, seen, verbose = [], set(), set(), []
    for item in results:
        idx = item["qsl_idx"]
        if idx in seen:
            continue
        seen.add(idx)
        values = np.frombuffer(bytes.fromhex(item["data"]), np.float32)
        image = image_map[idx]
        if len(values) < 7:  # no detection: the image still counts, and --verbose names its URL
            image_ids.add(image["id"])
            verbose.append(f"no results: {image['coco_url']}, idx={idx}")
            continue
        for start in range(0, len(values), 7):
            _, ymin, xmin, ymax, xmax, conf, label = values[start : start + 7]
            ymin, ymax = ymin * image["height"], ymax * image["height"]  # float32 scalar x int
            xmin, xmax = xmin * image["width"], xmax * image["width"]
            detections.append(
                {
                    "image_id": image["id"],
                    "image_loc": str(coco_dir / "val2017" / image["file_name"]),
                    "category_id": int(label),
                    "bbox": [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)],
                    "score": float(conf),
                }
            )
            image_ids.add(image["id"])
    det_path = out_dir / "coco-results.json"
    det_path.write_text(json.dumps(detections, sort_keys=True, indent=4))
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(str(det_path))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * ev.stats[0], verbose


def test_demo_annotations_have_every_field_the_official_script_reads(demo_root):
    coco = json.loads((demo_root / ANNOTATIONS_REL).read_text())
    assert {"images", "annotations", "categories"} <= set(coco)
    for image in coco["images"]:
        missing = [f for f in IMAGE_FIELDS if f not in image]
        assert not missing, (image["id"], missing)
        assert image["coco_url"].endswith(image["file_name"])
        assert (demo_root / image["coco_url"]).is_file()  # the URL is the image's path under the root
    for ann in coco["annotations"]:
        assert all(f in ann for f in ANNOTATION_FIELDS), ann["id"]
    for cat in coco["categories"]:
        assert all(f in cat for f in CATEGORY_FIELDS), cat


@pytest.mark.parametrize("shift_px", [0.0, 4.0, 8.0])
def test_official_flow_gives_our_map(demo_root, tmp_path, shift_px):
    library = load_library({"data_dir": str(demo_root)})
    entries = oracle_entries(demo_root, shift_px=shift_px, indices=range(40))
    entries[7] = (entries[7][0], b"")  # an image without detections (reads coco_url when verbose)
    entries.append(entries[3])  # a repeated qsl_idx: the first answer wins in both
    log = write_accuracy_log(
        tmp_path / "mlperf_log_accuracy.json", [(k, idx, data, 0) for k, (idx, data) in enumerate(entries)]
    )
    official_map, verbose = official_flow(demo_root, log, tmp_path)
    ours = score(entries, library, {})
    assert ours.metrics["mAP"] == official_map  # same float, not just close
    assert f"mAP={official_map:.3f}%" in ours.accuracy_txt.splitlines()
    assert verbose == [f"no results: val2017_safe/{library.images[7]['file_name']}, idx=7"]
    assert ours.metrics["no_result_images"] == 1 and ours.metrics["duplicates"] == 1
