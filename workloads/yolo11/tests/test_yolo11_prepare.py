"""scripts/prepare_coco_mlperf.py: the MLPerf COCO subset builder, on a tiny generated COCO."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from workloads.yolo11.dataset import load_library
from workloads.yolo11.demo import generate_demo

REPO = Path(__file__).resolve().parents[3]


def _prepare_module():
    spec = importlib.util.spec_from_file_location(
        "prepare_coco_mlperf", REPO / "scripts" / "prepare_coco_mlperf.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_script_on_a_tiny_coco(tmp_path):
    """The subset builder on a 4-image generated COCO (never run here on real data)."""
    prep = _prepare_module()
    coco_dir = generate_demo(tmp_path / "coco", n_images=4)
    (coco_dir / "val2017_safe").rename(coco_dir / "val2017")
    ids = tmp_path / "ids.txt"
    ids.write_text("000000089979.jpg\n90000\n")  # listed out of order: output keeps annotation order
    assert (
        prep.main(
            [
                "--coco-dir",
                str(coco_dir),
                "--out",
                str(tmp_path / "out"),
                "--image-ids",
                str(ids),
                "--expect",
                "2",
            ]
        )
        == 0
    )
    lib = load_library({"data_dir": str(tmp_path / "out")})
    assert [img["id"] for img in lib.images] == [90000, 89979]
    assert {a["image_id"] for a in lib.coco_dataset["annotations"]} == {90000, 89979}
    assert (tmp_path / "out" / "val2017_safe" / "000000090000.png").is_symlink()
    # licence filter: the demo's CC BY licence is "safe"; a non-commercial one is not
    coco = lib.coco_dataset
    assert len(prep.select_images(coco)) == 2
    nc = {**coco, "licenses": [{"id": 4, "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/"}]}
    assert prep.select_images(nc) == []
    with pytest.raises(SystemExit, match="selected 4 images, expected 1525"):
        prep.main(["--coco-dir", str(coco_dir), "--out", str(tmp_path / "out2")])
    with pytest.raises(ValueError, match="not in the annotations"):
        prep.select_images(coco, [1])


def test_prepare_script_help():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_coco_mlperf.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--coco-dir" in out.stdout and "--image-ids" in out.stdout and "1525" in out.stdout
