"""Demo generator and COCO sample library of the yolo11 workload."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from workloads.yolo11 import WORKLOAD
from workloads.yolo11.categories import COCO_91_TO_80
from workloads.yolo11.dataset import CocoLibrary, CocoSample, load_library
from workloads.yolo11.demo import (
    _CLASSES,
    ANNOTATIONS_REL,
    IMAGES_REL,
    build_demo,
    ensure_demo_dataset,
    generate_demo,
)

DEMO_SHA256 = "3b1bac32fc28dd9ff3903b1d8d5a64d882159163091de3a494f1673095c04870"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("yolo11-demo"))


def test_workload_spec():
    assert WORKLOAD.name == "yolo11"
    assert WORKLOAD.mlperf_model == "yolo"
    assert WORKLOAD.library == "workloads.yolo11.dataset:load_library"
    assert WORKLOAD.accuracy == "workloads.yolo11.accuracy:score"
    assert WORKLOAD.params["data_dir"] is None


def test_demo_annotations_are_deterministic(demo_root):
    coco, _ = build_demo(64, 0)
    canonical = json.dumps(coco, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == DEMO_SHA256
    assert hashlib.sha256((demo_root / ANNOTATIONS_REL).read_bytes()).hexdigest() == DEMO_SHA256
    assert len(coco["images"]) == 64 and len(coco["annotations"]) == 162 and len(coco["categories"]) == 80
    # image ids differ from positions; sizes alternate landscape / portrait
    assert [img["id"] for img in coco["images"][:3]] == [90000, 89993, 89986]
    assert [(img["height"], img["width"]) for img in coco["images"][:4]] == [
        (480, 640),
        (640, 480),
        (427, 640),
        (360, 480),
    ]
    assert {a["category_id"] for a in coco["annotations"]} == {1, 3, 13, 18, 37, 47, 72}
    other, _ = build_demo(64, 1)
    assert other["annotations"] != coco["annotations"]


def test_demo_boxes_are_exact_pixel_extents(demo_root):
    coco = json.loads((demo_root / ANNOTATIONS_REL).read_text())
    lib = CocoLibrary(demo_root / ANNOTATIONS_REL, demo_root / IMAGES_REL)
    lib.load(range(8))
    checked = 0
    for i in range(8):
        img = lib.get(i).image
        for ann in lib.ground_truth(i):
            colour = _CLASSES[COCO_91_TO_80[ann["category_id"]]]
            x, y, w, h = (int(v) for v in ann["bbox"])
            # window 2 px larger than the box: objects are >= 4 px apart, so only this object is in it
            y0, x0 = max(0, y - 2), max(0, x - 2)
            window = np.all(img[y0 : y + h + 2, x0 : x + w + 2] == colour, axis=-1)
            ys, xs = np.nonzero(window)
            assert (xs.min() + x0, ys.min() + y0, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (
                x,
                y,
                w,
                h,
            )
            assert window.sum() == ann["area"]
            checked += 1
    assert checked == sum(
        1 for a in coco["annotations"] if a["image_id"] in {im["id"] for im in coco["images"][:8]}
    )


def test_ensure_demo_dataset_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    root = ensure_demo_dataset(4)
    assert root == tmp_path / "yolo11-demo-v2-n4"
    ann = root / ANNOTATIONS_REL
    stamp = ann.stat().st_mtime_ns
    assert ensure_demo_dataset(4) == root and ann.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path)) == ["yolo11-demo-v2-n4"]  # no temp dir left behind
    lib = load_library({"data_dir": None, "demo_images": 4})
    assert lib.total_count == 4 and lib.images_dir == root / IMAGES_REL


def test_library_load_get_unload(demo_root):
    lib = load_library({"data_dir": str(demo_root)})
    assert (lib.total_count, lib.performance_count, lib.loaded_count) == (64, 64, 0)
    lib.load([1, 3, 3])
    sample = lib.get(1)
    assert isinstance(sample, CocoSample)
    assert (sample.index, sample.orig_hw, sample.image_id) == (1, (640, 480), 89993)
    assert sample.image.shape == (640, 480, 3) and sample.image.dtype == np.uint8
    assert lib.loaded_count == 2
    with pytest.raises(KeyError, match="sample 0 is not loaded"):
        lib.get(0)
    with pytest.raises(IndexError, match="sample index 64 out of range"):
        lib.load([64])
    lib.unload([1, 3, 7])
    assert lib.loaded_count == 0
    with pytest.raises(KeyError):
        lib.get(1)


def test_library_counts(demo_root):
    assert load_library({"data_dir": str(demo_root), "count": 10}).total_count == 10
    assert load_library({"data_dir": str(demo_root), "count": 10}).performance_count == 10
    assert load_library({"data_dir": str(demo_root), "performance_count": 16}).performance_count == 16
    with pytest.raises(ValueError, match="performance_count must be >= 1"):
        load_library({"data_dir": str(demo_root), "performance_count": 0})


def test_library_default_performance_count_is_500(tmp_path):
    coco = {
        "images": [{"id": k, "file_name": "a.png", "height": 2, "width": 2} for k in range(600)],
        "annotations": [],
        "categories": [],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    lib = CocoLibrary(tmp_path / "ann.json", tmp_path / "img")
    assert (lib.total_count, lib.performance_count) == (600, 500)
    with pytest.raises(ValueError, match="cannot decode image file: .*a.png"):
        lib.load([0])


def test_library_errors_name_the_file(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir not found: .*nowhere"):
        load_library({"data_dir": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="annotations file not found: .*nope.json"):
        load_library({"data_dir": str(demo_root), "annotations": "nope.json"})
    with pytest.raises(FileNotFoundError, match="no image folder in"):
        load_library({"data_dir": str(tmp_path), "annotations": str(demo_root / ANNOTATIONS_REL)})
    (tmp_path / "imgs").mkdir()
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*000000090000.png \(and 63 more\)"):
        load_library(
            {"data_dir": str(tmp_path), "annotations": str(demo_root / ANNOTATIONS_REL), "images": "imgs"}
        )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON: .*bad.json"):
        CocoLibrary(tmp_path / "bad.json", tmp_path / "imgs")
    (tmp_path / "noimg.json").write_text(
        json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []})
    )
    with pytest.raises(ValueError, match=r"images\[0\] needs"):
        CocoLibrary(tmp_path / "noimg.json", tmp_path / "imgs")
