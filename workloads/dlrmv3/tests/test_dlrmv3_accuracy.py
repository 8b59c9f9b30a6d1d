"""Accuracy payload, metrics and accuracy.txt format of DLRMv3."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from workloads.dlrmv3.accuracy import compute_metrics, decode_payload, encode_payload, score

# The submission checker's patterns (tools/submission/submission_checker/constants.py).
CHECKER = {
    "DLRM_NE": r".*metric/lifetime_ne/rating:\s*([\d\.]+).*",
    "DLRM_ACC": r".*metric/lifetime_accuracy/rating:\s*([\d\.]+).*",
    "DLRM_AUC": r".*metric/lifetime_gauc/rating:\s*([\d\.]+).*",
}


def test_payload_roundtrip_and_layout() -> None:
    data = encode_payload(3, 17, np.array([0.9, 0.2]), np.array([1, 0]))
    arr = np.frombuffer(data, np.float32)
    assert arr.tolist() == pytest.approx([3, 17, 0.9, 0.2, 1, 0, 1, 1, 2])
    ts, q, p, y, w = decode_payload(data)
    assert (ts, q) == (3, 17) and y.tolist() == [1, 0] and w.tolist() == [1, 1]
    with pytest.raises(ValueError, match="3\\*2\\+3"):
        decode_payload(data[:8] + data[12:])          # one float missing in the middle


def test_metrics_exact_values() -> None:
    reqs = [
        (np.array([0.9, 0.8, 0.3, 0.6]), np.array([1.0, 1.0, 0.0, 0.0]), np.ones(4)),   # AUC 1
        (np.array([0.2, 0.7, 0.4]), np.array([1.0, 0.0, 0.0]), np.ones(3)),              # AUC 0
        (np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.ones(2)),                        # skipped
        (np.array([0.1, 0.6]), np.array([1.0, 1.0]), np.ones(2)),                        # skipped
    ]
    m = compute_metrics(reqs)
    q = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.4, 0.5, 0.5, 0.1, 0.6])
    y = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1.0])
    ce = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    p = 6 / 11
    assert m["ne"] == pytest.approx(ce / -(p * math.log(p) + (1 - p) * math.log(1 - p)))
    assert m["accuracy"] == pytest.approx(6 / 11)   # hits: .9 .8 .3 .4 .5 .6
    assert m["gauc"] == pytest.approx(0.5)         # mean of 1 and 0
    assert m["gauc_num_samples"] == 2


def test_score_text_matches_checker_and_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    entries = []
    for k in range(20):
        y = (rng.random(32) < 0.4).astype(np.float32)
        p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 32), 0.01, 0.99)
        entries.append((k, encode_payload(k // 10, k % 10, p, y)))
    entries.append((0, entries[0][1]))                    # a repeat counts once
    res = score(entries, None, {})
    assert res.metrics["num_requests"] == 20
    vals = {}
    for key, pat in CHECKER.items():
        found = [re.match(pat, line) for line in res.accuracy_txt.splitlines()]
        (m,) = [f for f in found if f]
        vals[key] = float(m.group(1))
    assert vals["DLRM_NE"] == pytest.approx(res.metrics["ne"])
    assert vals["DLRM_AUC"] == pytest.approx(res.metrics["gauc"])
    assert res.targets["gauc"] == pytest.approx(0.78663 * 0.999)
    ref = {"ne": res.metrics["ne"], "accuracy": res.metrics["accuracy"], "gauc": res.metrics["gauc"]}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    own = score(entries, None, {"reference_metrics": str(tmp_path / "ref.json")})
    assert own.passed is True
    worse = {**ref, "gauc": ref["gauc"] * 1.01}
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    assert score(entries, None, {"reference_metrics": str(tmp_path / "worse.json")}).passed is False
    with pytest.raises(ValueError, match="reference_metrics"):
        score(entries, None, {"reference_metrics": str(tmp_path / "nope.json")})
