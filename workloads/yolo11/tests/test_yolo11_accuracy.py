"""Payload encoding and mAP scoring of the yolo11 workload, driven by the oracle SUT."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from raybench.core.protocols import Query, SUTContext
from workloads.yolo11 import ORACLE_SPEC
from workloads.yolo11.accuracy import decode_payload, encode_detections, score, targets_for
from workloads.yolo11.categories import COCO_80_TO_91, COCO_91_TO_80, COCO_NAMES
from workloads.yolo11.dataset import load_library
from workloads.yolo11.demo import generate_demo
from workloads.yolo11.oracle import OracleYoloSUT

CHECKER_MAP_RE = re.compile(r".*(?:mAP=|'Total':)\s*([\d.]+)")  # submission checker ACC_PATTERN["mAP"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("yolo11-demo"))


@pytest.fixture(scope="module")
def library(demo_root):
    return load_library({"data_dir": str(demo_root)})


def oracle_entries(demo_root, shift_px=0.0, indices=range(64)):
    sut = OracleYoloSUT({**ORACLE_SPEC.params, "shift_px": shift_px})

    async def run():
        await sut.start(SUTContext("yolo11", "Offline", "AccuracyOnly", {"data_dir": str(demo_root)}))
        responses = await sut.issue(Query(id=0, indices=list(indices), samples=[None] * len(indices)))
        await sut.stop()
        return responses

    responses = asyncio.run(run())
    assert all(r.error is None for r in responses)
    return [(i, r.data) for i, r in zip(indices, responses, strict=True)]


def checker_value(text):
    values = [m.group(1) for line in text.splitlines() if (m := CHECKER_MAP_RE.match(line))]
    assert len(values) == 1, text
    return values[0]


def test_80_to_91_table():
    assert len(COCO_80_TO_91) == 80 and len(set(COCO_80_TO_91)) == 80
    assert (COCO_80_TO_91[0], COCO_80_TO_91[11], COCO_80_TO_91[24], COCO_80_TO_91[62], COCO_80_TO_91[79]) == (
        1, 13, 27, 72, 90,
    )  # fmt: skip
    assert sorted(set(range(1, 91)) - set(COCO_80_TO_91)) == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert COCO_91_TO_80[13] == 11 and COCO_91_TO_80[90] == 79 and 12 not in COCO_91_TO_80
    assert (COCO_NAMES[0], COCO_NAMES[11], COCO_NAMES[79]) == ("person", "stop sign", "toothbrush")


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics not installed")
def test_names_match_ultralytics_coco_yaml():
    pkg = Path(importlib.util.find_spec("ultralytics").origin).parent
    names = yaml.safe_load((pkg / "cfg" / "datasets" / "coco.yaml").read_text())["names"]
    assert tuple(names[k] for k in range(80)) == COCO_NAMES


def test_encode_matches_reference_struct_pack():
    box = np.array([[10.5, 20.25, 110.0, 220.75]], dtype=np.float32)
    data = encode_detections(3, box, [0.5], [11], 480, 640)
    b = box[0]
    expected = struct.pack(
        "7f", 3.0, float(b[1] / 480), float(b[0] / 640), float(b[3] / 480), float(b[2] / 640), 0.5, 13.0
    )
    assert data == expected and len(data) == 28
    row = decode_payload(data)[0]
    assert row[0] == 3 and row[6] == 13 and row[5] == 0.5
    assert row[1] == np.float32(20.25) / np.float32(480) and row[4] == np.float32(110.0) / np.float32(640)


def test_encode_edge_cases():
    assert encode_detections(0, np.zeros((0, 4)), [], [], 10, 10) == b""
    assert decode_payload(b"").shape == (0, 7)
    with pytest.raises(ValueError, match="class outside 0..79"):
        encode_detections(0, [[0, 0, 1, 1]], [1.0], [80], 10, 10)
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        encode_detections(0, [[0, 0, 1, 1]], [1.0, 1.0], [0], 10, 10)
    with pytest.raises(ValueError, match="bad original size"):
        encode_detections(0, [[0, 0, 1, 1]], [1.0], [0], 0, 10)
    with pytest.raises(ValueError, match="not a multiple of 28"):
        decode_payload(b"\0" * 30)


def test_oracle_scores_exactly_100(demo_root, library):
    result = score(oracle_entries(demo_root), library, {})
    assert result.metrics["mAP"] == 100.0 and result.metrics["AP50"] == 100.0
    assert result.metrics["images"] == 64 and result.metrics["no_result_images"] == 0
    assert "mAP=100.000%" in result.accuracy_txt.splitlines()
    assert checker_value(result.accuracy_txt) == "100.000"
    assert result.passed is True
    assert result.targets == {"mAP": pytest.approx(50.73)}


def test_shifted_oracle_scores_known_value(demo_root, library):
    result = score(oracle_entries(demo_root, shift_px=4), library, {})
    assert checker_value(result.accuracy_txt) == "59.747"
    assert result.metrics["mAP"] == pytest.approx(59.7470498042783, abs=1e-9)
    assert "target yolo-95: 50.730% -> PASS" in result.accuracy_txt
    assert result.passed is True
    # tiers against a different reference accuracy: 0.95 * 62 = 58.9 passes, 0.99 * 62 = 61.38 fails
    assert score(oracle_entries(demo_root, shift_px=4), library, {"reference_map": 62}).passed is True
    r99 = score(
        oracle_entries(demo_root, shift_px=4), library, {"reference_map": 62, "accuracy_target": "yolo-99"}
    )
    assert r99.passed is False and r99.targets == {"mAP": pytest.approx(61.38)}
    assert "target yolo-99: 61.380% -> FAIL" in r99.accuracy_txt
    assert checker_value(score(oracle_entries(demo_root, shift_px=8), library, {}).accuracy_txt) == "26.685"


def test_targets():
    assert targets_for({}) == {"yolo-95": 53.4 * 0.95, "yolo-99": 53.4 * 0.99}
    assert targets_for({"reference_map": 40})["yolo-99"] == 40 * 0.99


def test_first_entry_wins_and_partial_logs(demo_root, library):
    entries = oracle_entries(demo_root, indices=range(10))
    garbage = encode_detections(2, [[0, 0, 5, 5]], [0.9], [0], 480, 640)
    result = score([*entries, (2, garbage)], library, {})
    assert checker_value(result.accuracy_txt) == "100.000"  # only the 10 logged images are evaluated
    assert (result.metrics["images"], result.metrics["duplicates"]) == (10, 1)
    # a duplicate that comes first replaces the oracle answer for image 2 and lowers the score
    assert score([(2, garbage), *entries], library, {}).metrics["mAP"] < 100.0


def test_empty_payloads_and_no_detections(demo_root, library):
    entries = oracle_entries(demo_root, indices=range(4))
    result = score([entries[0], (1, b"")], library, {})
    assert result.metrics["no_result_images"] == 1 and result.metrics["images"] == 2
    assert result.metrics["mAP"] < 100.0  # the image without detections costs recall
    nothing = score([(0, b""), (1, b"")], library, {})
    assert nothing.metrics["mAP"] == 0.0 and nothing.passed is False
    assert checker_value(nothing.accuracy_txt) == "0.000"


def test_payload_index_mismatch_is_counted(demo_root, library):
    ((idx, data),) = oracle_entries(demo_root, indices=[5])
    result = score([(6, data)], library, {})  # logged under the wrong qsl index
    assert result.metrics["idx_mismatch"] == len(decode_payload(data))
    assert "WARNING" in result.accuracy_txt


def test_bad_entries_raise(library):
    with pytest.raises(ValueError, match="qsl_idx 64 is outside"):
        score([(64, b"")], library, {})
    with pytest.raises(ValueError, match="qsl_idx 3: .*multiple of 28"):
        score([(3, b"\0" * 8)], library, {})
    with pytest.raises(ValueError, match="accuracy_target must be one of"):
        score([], library, {"accuracy_target": "yolo-90"})


def test_oracle_requires_start():
    sut = OracleYoloSUT({})
    with pytest.raises(RuntimeError, match="before start"):
        asyncio.run(sut.issue(Query(id=0, indices=[0], samples=[None])))
