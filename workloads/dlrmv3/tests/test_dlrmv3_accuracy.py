"""Accuracy payload, metrics and accuracy.txt format of DLRMv3."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from workloads.dlrmv3.accuracy import (
    compute_metrics,
    decode_payload,
    descending_order,
    encode_payload,
    introsort_order,
    request_states,
    score,
)

BACKENDS = ["torch", "numpy"]

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


@pytest.mark.parametrize("backend", BACKENDS)
def test_metrics_exact_values(backend) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    reqs = [
        (np.array([0.9, 0.8, 0.3, 0.6]), np.array([1.0, 1.0, 0.0, 0.0]), np.ones(4)),   # AUC 1
        (np.array([0.2, 0.7, 0.4]), np.array([1.0, 0.0, 0.0]), np.ones(3)),              # AUC 0
        (np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.ones(2)),                        # skipped
        (np.array([0.1, 0.6]), np.array([1.0, 1.0]), np.ones(2)),                        # skipped
    ]
    m = compute_metrics(reqs, backend=backend)
    q = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.4, 0.5, 0.5, 0.1, 0.6], dtype=np.float32).astype(float)
    y = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1.0])
    ce = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    p = 6 / 11
    assert m["ne"] == pytest.approx(ce / -(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-14)
    assert m["accuracy"] == 6 / 11   # hits: .9 .8 .3 .4 .5 .6
    assert m["gauc"] == (1.0 + 0.0 + 1e-9) / (2 + 2e-9)   # (sum of AUCs + 1e-9) / (count + 2e-9)
    assert m["gauc_num_samples"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_scores_use_the_official_rank_rule(backend) -> None:
    """Ties are not averaged: the candidate the sort puts first gets the higher rank.

    torchrec's compute_gauc_3d ranks candidates in torch.argsort(descending=True) order (for
    <= 16 candidates that order is stable, ties keep log order), gives ranks n..1 and computes
    AUC = (sum of positive ranks - P(P+1)/2) / (P(n-P)), per request, in float32:

    R1 preds [.7 .5 .5 .2], labels [1 0 1 0]: order .7(1) .5(0) .5(1) .2(0), ranks 4 3 2 1;
       positives' ranks 4 + 2 = 6, minus 2*3/2 = 3 -> 3 / (2*2) = 0.75.
       sklearn averages the tied pair (1/2): (1 + 1 + 1/2 + 1) / 4 = 0.875.
    R2 preds [.5 .5 .9], labels [1 0 0]: order .9(0) .5(1) .5(0), ranks 3 2 1; positive rank 2,
       minus 1 -> 1 / (1*2) = 0.5.  sklearn: (0 + 1/2) / 2 = 0.25.
    R3 preds [.3 0 .3], labels [1 0 0]: every prediction equals the first one or 0 -> skipped
       (torchrec treats 0 as padding).  sklearn: (1 + 1/2) / 2 = 0.75.
    GAUC = (0.75 + 0.5 + 1e-9) / (2 + 2e-9) = 1.250000001 / 2.000000002 = 0.62499999987500000...;
    the mean of sklearn's per-request AUCs would be (0.875 + 0.25 + 0.75) / 3 = 0.625.
    """
    if backend == "torch":
        pytest.importorskip("torch")
    from sklearn.metrics import roc_auc_score

    reqs = [
        (np.array([0.7, 0.5, 0.5, 0.2]), np.array([1.0, 0.0, 1.0, 0.0])),
        (np.array([0.5, 0.5, 0.9]), np.array([1.0, 0.0, 0.0])),
        (np.array([0.3, 0.0, 0.3]), np.array([1.0, 0.0, 0.0])),
    ]
    official = [0.75, 0.5, None]
    sklearn = [0.875, 0.25, 0.75]
    for (pr, lb), want, sk in zip(reqs, official, sklearn, strict=True):
        st = request_states(pr, lb, np.ones(len(pr)), backend=backend)
        assert (st["auc"], st["auc_count"]) == ((want, 1) if want is not None else (0.0, 0))
        assert roc_auc_score(lb, pr) == sk
    m = compute_metrics([(pr, lb, np.ones(len(pr))) for pr, lb in reqs], backend=backend)
    assert m["gauc"] == (0.75 + 0.5 + 1e-9) / (2 + 2e-9)
    assert m["gauc"] == pytest.approx(0.624999999875, abs=1e-15)
    assert m["gauc_num_samples"] == 2


def test_no_counted_request_gives_one_half() -> None:
    m = compute_metrics([(np.array([0.2, 0.9]), np.array([1.0, 1.0]), np.ones(2))])
    assert m["gauc"] == 1e-9 / 2e-9 and m["gauc_num_samples"] == 0


def _tie_heavy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Predictions with many ties: float16-rounded scores, some exact 0, -0.0 and NaN."""
    p = rng.choice(np.linspace(0, 1, 1 + int(rng.integers(1, 40))), n).astype(np.float16).astype(np.float32)
    if n > 8:
        p[rng.integers(0, n, 2)] = -0.0
        if rng.random() < 0.3:
            p[rng.integers(0, n)] = np.nan
    return p


def test_introsort_order_equals_torch_argsort() -> None:
    """Our re-implementation of libstdc++'s introsort gives torch's CPU argsort order, ties included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    assert introsort_order([0] * 16) == list(range(16))  # <= 16: insertion sort, stable
    assert introsort_order([0] * 17) != list(range(17))  # > 16: ties get shuffled
    for n in [1, 2, 5, 16, 17, 33, 100, 700, 2048]:
        for _ in range(3):
            p = _tie_heavy(rng, n)
            want = torch.argsort(torch.from_numpy(p), descending=True).numpy()
            assert np.array_equal(descending_order(p, backend="introsort"), want), n
            assert np.array_equal(descending_order(p, backend="torch"), want), n


def test_torch_and_numpy_backends_agree_bit_for_bit() -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    reqs = []
    for n in [3, 16, 40, 300, 2048]:
        y = (rng.random(n) < 0.4).astype(np.float32)
        p = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, n), 0, 1).astype(np.float16).astype(np.float32)
        reqs.append((p, y, np.ones(n, np.float32)))
    assert compute_metrics(reqs, backend="torch") == compute_metrics(reqs, backend="numpy")


def test_score_text_matches_checker_and_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    entries = []
    for k in range(20):
        y = (rng.random(32) < 0.4).astype(np.float32)
        p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 32), 0.01, 0.99)
        entries.append((k, encode_payload(k // 10, k % 10, p, y)))
    entries.append((0, entries[0][1]))                    # a repeat counts again, as in the reference
    res = score(entries, None, {})
    assert res.metrics["num_requests"] == 21 and res.metrics["unique_requests"] == 20
    assert res.metrics == score(entries[:20] + entries[:1], None, {}).metrics
    assert res.metrics["gauc"] != score(entries[:20], None, {}).metrics["gauc"]
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
