"""DLRMv3 accuracy: NE, accuracy and per-request AUC from the accuracy log.

Payload of one response (float32, as the MLPerf reference's ``accuracy.py`` reads it):
``[ts_idx, query_idx, preds x n, labels x n, weights x n, n]``, length ``3 n + 3``; defined in
:mod:`workloads.dlrmv3.payload` (its functions are re-exported here).

Metrics (torchrec's ``NEMetricComputation``, ``AccuracyMetricComputation``,
``GAUCMetricComputation``, which the reference uses):

* NE = weighted cross entropy / entropy of the weighted positive rate ``p``:
  ``NE = (-sum w (y log q + (1 - y) log(1 - q)) / sum w) / (-(p log p + (1 - p) log(1 - p)))``
  with predictions clamped to ``[eps, 1 - eps]``; over all candidates of all requests;
* accuracy = ``sum w [(q >= 0.5) == y] / sum w`` over all candidates;
* AUC ("gauc") = mean over requests of the request's AUC (``sklearn.metrics.roc_auc_score``),
  skipping requests whose labels are all equal or whose predictions are all equal.

``accuracy.txt`` has the ``metric/lifetime_*/rating: X`` lines the submission checker's
``DLRM_NE/ACC/AUC`` regexes read. Pass criteria: accuracy and AUC at least 99.9 % of the
reference, NE within 0.1 % of it (lower is better; the checker itself only tests
``NE >= 0.999 x ref``). The reference is MLPerf's checkpoint (NE 0.86687, accuracy 0.69651,
AUC 0.78663) unless ``params["reference_metrics"]`` names the JSON written by
``scripts/train_dlrmv3.py`` for our own checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.spec import AccuracyResult
from workloads.dlrmv3.payload import decode_payload, encode_payload

__all__ = ["encode_payload", "decode_payload", "compute_metrics", "format_accuracy_txt", "score",
           "MLPERF_REFERENCE", "TOLERANCE"]

MLPERF_REFERENCE = {"ne": 0.86687, "accuracy": 0.69651, "gauc": 0.78663}
TOLERANCE = 0.999
_EPS = 1e-12


def compute_metrics(requests: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """NE, accuracy, mean per-request AUC over ``(preds, labels, weights)`` per request."""
    from sklearn.metrics import roc_auc_score

    if not requests:
        raise ValueError("dlrmv3: no requests to score")
    q = np.concatenate([r[0] for r in requests]).astype(np.float64)
    y = np.concatenate([r[1] for r in requests]).astype(np.float64)
    w = np.concatenate([r[2] for r in requests]).astype(np.float64)
    qc = np.clip(q, _EPS, 1 - _EPS)
    ce = -np.sum(w * (y * np.log(qc) + (1 - y) * np.log(1 - qc))) / np.sum(w)
    p = float(np.clip(np.sum(w * y) / np.sum(w), _EPS, 1 - _EPS))
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    acc = float(np.sum(w * ((q >= 0.5) == (y > 0.5))) / np.sum(w))
    aucs = []
    for pr, lb, wt in requests:
        if lb.min() == lb.max() or pr.min() == pr.max():
            continue
        aucs.append(roc_auc_score(lb, pr, sample_weight=wt))
    return {
        "ne": float(ce / entropy), "accuracy": acc,
        "gauc": float(np.mean(aucs)) if aucs else float("nan"),
        "gauc_num_samples": float(len(aucs)), "num_requests": float(len(requests)),
        "num_candidates": float(q.size), "label_rate": float(np.sum(w * y) / np.sum(w)),
    }


def format_accuracy_txt(metrics: dict[str, float], reference: dict[str, float],
                        passed: bool) -> str:
    lines = [
        f"metric/lifetime_ne/rating: {metrics['ne']}",
        f"metric/lifetime_accuracy/rating: {metrics['accuracy']}",
        f"metric/lifetime_gauc/rating: {metrics['gauc']}",
        f"metric/lifetime_gauc_num_samples/rating: {metrics['gauc_num_samples']}",
        f"num_requests: {int(metrics['num_requests'])}",
        f"reference: ne={reference['ne']} accuracy={reference['accuracy']} gauc={reference['gauc']}",
        f"result: {'PASS' if passed else 'FAIL'} (within {TOLERANCE:.1%} of reference)",
    ]
    return "\n".join(lines) + "\n"


def load_reference(params: dict[str, Any]) -> dict[str, float]:
    """Reference metrics: MLPerf's, or the JSON named by ``params['reference_metrics']``."""
    path = params.get("reference_metrics")
    if not path:
        return dict(MLPERF_REFERENCE)
    try:
        ref = json.loads(Path(path).read_text())
        return {k: float(ref[k]) for k in ("ne", "accuracy", "gauc")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"dlrmv3: bad reference_metrics file {path}: {exc}") from exc


def score(entries: list[tuple[int, bytes]], library: Any, params: dict[str, Any]) -> AccuracyResult:
    """Score accuracy-log entries (``(qsl_idx, payload)``); ``qsl_idx`` is ignored because the
    SUT serves requests in its own streaming order, the payload names the request.

    Requests seen more than once (repeats in performance mode) count once, first occurrence.
    """
    seen: set[tuple[int, int]] = set()
    requests = []
    for _, data in entries:
        ts_idx, query_idx, preds, labels, weights = decode_payload(data)
        if (ts_idx, query_idx) in seen:
            continue
        seen.add((ts_idx, query_idx))
        requests.append((preds, labels, weights))
    m = compute_metrics(requests)
    ref = load_reference(params)
    targets = {"ne": ref["ne"] * TOLERANCE, "accuracy": ref["accuracy"] * TOLERANCE,
               "gauc": ref["gauc"] * TOLERANCE}
    passed = (m["accuracy"] >= targets["accuracy"] and m["gauc"] >= targets["gauc"]
              and targets["ne"] <= m["ne"] <= ref["ne"] / TOLERANCE)
    total = getattr(library, "total_count", None)
    if total is not None:
        m["coverage"] = len(requests) / float(total)
    return AccuracyResult(metrics=m, accuracy_txt=format_accuracy_txt(m, ref, passed),
                          passed=passed, targets=targets)
