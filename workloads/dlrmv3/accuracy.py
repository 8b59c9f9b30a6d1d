"""DLRMv3 accuracy: NE, accuracy and per-request AUC from the accuracy log, as MLPerf computes them.

Payload of one response (float32, as the MLPerf reference's ``accuracy.py`` reads it):
``[ts_idx, query_idx, preds x n, labels x n, weights x n, n]``, length ``3 n + 3``; defined in
:mod:`workloads.dlrmv3.payload` (its functions are re-exported here).

The reference (``recommendation/dlrm_v3/accuracy.py``) feeds *every* entry of the log, in file
order, one request per update, to torchrec's ``NEMetricComputation``,
``AccuracyMetricComputation`` and ``GAUCMetricComputation`` (``MetricsLogger`` in ``utils.py``,
``batch_size=1``) and prints their ``lifetime_*`` values. Nothing is skipped or de-duplicated: a
request logged twice counts twice; a payload whose length is not ``3 n + 3`` stops the script.
This module reproduces those computations, dtype for dtype:

* NE (``torchrec/metrics/ne.py``): per request, predictions are cast to float64 and clamped to
  ``[1e-12, 1 - 1e-12]``; ``ce = -w y log2 q - w (1 - y) log2 (1 - q)`` summed in float64; the
  float32 sums ``sum w``, ``sum w y``, ``sum w (1 - y)`` are added to float64 totals. At the end
  ``mean = pos / sum_w`` clamped to the same ``[eta, 1 - eta]`` and
  ``NE = ce_sum / (-pos log2 mean - neg log2 (1 - mean))``.
* accuracy (``torchrec/metrics/accuracy.py``): ``sum w [(float64(q) >= 0.5) == y]`` (label
  compared as a number, so only labels exactly 0 or 1 can match) over ``sum w``; 0 if no weight.
* AUC (``torchrec/metrics/gauc.py``, ``compute_gauc_3d``): per request the candidates are put in
  the order ``torch.argsort(q, descending=True)`` returns, rank ``n`` for the first down to 1;
  ``auc = (sum of positive ranks - P (P + 1) / 2) / (P (n - P) + 1e-10)`` in float32 (weights are
  ignored). **Tied scores are not averaged** (``sklearn.metrics.roc_auc_score`` gives a tied
  positive/negative pair 1/2): the pair counts 1 if the sort put the positive first, else 0. A
  request is skipped (adds 0 to the sum and to the count) when its labels are all 0 or all 1,
  or when every prediction equals the first one or 0. The result is
  ``(sum_auc + 1e-9) / (count + 2e-9)``, so 0.5 when no request counts.

Order of tied scores: ``torch.argsort`` with the default ``stable=False`` on CPU sorts
(value, index) pairs with ``std::sort`` comparing values only (``SortingKernel.cpp``); with
libstdc++ that is introsort (median-of-3 quicksort, heapsort past a depth of ``2 log2 n``,
insertion sort for runs of at most 16 elements). So up to 16 candidates the order is stable
(first logged ranks higher); above that it is whatever introsort leaves. When torch is
importable (it is part of the ``dlrm`` extra) the scorer asks torch for the order, so it gets
the reference's order on the same torch build; otherwise :func:`introsort_order` reproduces
libstdc++'s algorithm (checked against torch in the tests). With torch, every per-request sum
is also taken with the same torch reductions, so the totals are bit-identical; the numpy
fallback agrees exactly for 0/1 labels and unit weights and to the last bit or two otherwise.

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

__all__ = ["encode_payload", "decode_payload", "compute_metrics", "descending_order", "introsort_order",
           "request_states", "format_accuracy_txt", "score", "MLPERF_REFERENCE", "TOLERANCE"]

MLPERF_REFERENCE = {"ne": 0.86687, "accuracy": 0.69651, "gauc": 0.78663}
TOLERANCE = 0.999
_ETA = 1e-12          # torchrec NEMetricComputation.eta
_AUC_DEN_EPS = 1e-10  # compute_gauc_3d: numerator / (denominator + 1e-10), in float32
_GAUC_EPS = 1e-9      # compute_window_auc: (auc_sum + 1e-9) / (num_samples + 2e-9)
_INSERTION_THRESHOLD = 16  # libstdc++ _S_threshold
_STATE_KEYS = ("ce_sum", "weight_sum", "pos", "neg", "acc_sum", "acc_weight_sum", "auc", "auc_count")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the dlrm extra
        return None
    return torch


def _sort_keys(preds: np.ndarray) -> list[int]:
    """Integer keys ordering like torch's descending comparator: larger value first, NaN first of all."""
    p = np.asarray(preds, dtype=np.float32).ravel()
    nan = np.isnan(p)
    keys = np.empty(p.size, dtype=np.int64)
    uniq, inv = np.unique(p[~nan], return_inverse=True)  # -0.0 and 0.0 compare equal, as in C++
    keys[~nan] = inv
    keys[nan] = uniq.size
    return keys.tolist()


def introsort_order(keys: list[int]) -> list[int]:
    """Indices in the order libstdc++'s ``std::sort`` leaves ``(key, index)`` pairs, comparing
    ``key[a] > key[b]`` only (what torch's CPU ``argsort(descending=True)`` runs).

    Our re-implementation of the published algorithm: introsort with depth limit
    ``2 floor(log2 n)``, median of (second, middle, last) moved to the front as pivot, unguarded
    Hoare partition, recursion on the right part, heapsort when the depth runs out, then one
    insertion sort (guarded over the first 16 elements, unguarded after).
    """
    n = len(keys)
    a = list(range(n))
    k = keys

    def before(i: int, j: int) -> bool:
        return k[i] > k[j]

    def linear_insert(last: int) -> None:  # unguarded: something before stops the scan
        v = a[last]
        nxt = last - 1
        while before(v, a[nxt]):
            a[last] = a[nxt]
            last, nxt = nxt, nxt - 1
        a[last] = v

    def insertion_sort(first: int, last: int) -> None:
        for i in range(first + 1, last):
            v = a[i]
            if before(v, a[first]):
                a[first + 1 : i + 1] = a[first:i]
                a[first] = v
            else:
                linear_insert(i)

    def adjust_heap(first: int, hole: int, length: int, value: int) -> None:
        top = child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if before(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and before(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole, parent = parent, (parent - 1) // 2
        a[first + hole] = value

    def heap_sort(first: int, last: int) -> None:
        length = last - first
        if length >= 2:
            for parent in range((length - 2) // 2, -1, -1):
                adjust_heap(first, parent, length, a[first + parent])
        while last - first > 1:
            last -= 1
            v = a[last]
            a[last] = a[first]
            adjust_heap(first, 0, last - first, v)

    def move_median_to_first(first: int, x: int, y: int, z: int) -> None:
        if before(a[x], a[y]):
            m = y if before(a[y], a[z]) else (z if before(a[x], a[z]) else x)
        else:
            m = x if before(a[x], a[z]) else (z if before(a[y], a[z]) else y)
        a[first], a[m] = a[m], a[first]

    def introsort(first: int, last: int, depth: int) -> None:
        while last - first > _INSERTION_THRESHOLD:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            move_median_to_first(first, first + 1, first + (last - first) // 2, last - 1)
            pivot, lo, hi = a[first], first + 1, last
            while True:
                while before(a[lo], pivot):
                    lo += 1
                hi -= 1
                while before(pivot, a[hi]):
                    hi -= 1
                if lo >= hi:
                    break
                a[lo], a[hi] = a[hi], a[lo]
                lo += 1
            introsort(lo, last, depth)
            last = lo

    if n < 2:
        return a
    introsort(0, n, 2 * (n.bit_length() - 1))
    if n > _INSERTION_THRESHOLD:
        insertion_sort(0, _INSERTION_THRESHOLD)
        for i in range(_INSERTION_THRESHOLD, n):
            linear_insert(i)
    else:
        insertion_sort(0, n)
    return a


def descending_order(preds: np.ndarray, backend: str = "auto") -> np.ndarray:
    """The candidate order of ``torch.argsort(preds, descending=True)`` on CPU (float32 values).

    ``backend``: ``"torch"`` asks torch, ``"introsort"`` uses :func:`introsort_order`,
    ``"auto"`` takes torch when importable.
    """
    p = np.array(preds, dtype=np.float32).ravel()
    torch = _torch() if backend in ("auto", "torch") else None
    if torch is not None:
        return torch.argsort(torch.from_numpy(p).view(1, 1, -1), descending=True, dim=-1).view(-1).numpy()
    if backend == "torch":
        raise RuntimeError("dlrmv3: torch is not installed")
    return np.asarray(introsort_order(_sort_keys(p)), dtype=np.int64)


def _states_torch(torch, preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, ...]:
    """One request's contribution to each torchrec state, computed with torchrec's own ops."""
    q = torch.from_numpy(preds).view(1, -1)
    y = torch.from_numpy(labels).view(1, -1)
    w = torch.from_numpy(weights).view(1, -1)
    qd = q.double().clamp_(min=_ETA, max=1 - _ETA)
    ce = -w * y * torch.log2(qd) - w * (1.0 - y) * torch.log2(1.0 - qd)
    ce_sum = torch.sum(ce, dim=-1)
    w_sum = torch.sum(w, dim=-1)
    pos = torch.sum(w * y, dim=-1)
    neg = torch.sum(w * (1.0 - y), dim=-1)
    acc_sum = torch.sum(w * ((q.double() >= 0.5) == y), dim=-1)
    # GAUC on [n_task=1, n_group=1, n] tensors, no padding
    q3, y3 = q.view(1, 1, -1), y.view(1, 1, -1)
    n = q3.shape[-1]
    order = torch.argsort(q3, descending=True, dim=-1)
    sorted_y = y3[0, 0, order.view(-1)].view(1, 1, n)
    rank = torch.flip(torch.arange(n) + 1, [0])[None, None, :]
    n_sample = torch.tensor([n])[None, :]
    pos_rank = sorted_y * rank - (sorted_y != 0) * (n - n_sample)[:, :, None]
    n_pos = sorted_y.sum(-1)
    numerator = torch.sum(pos_rank, -1) - n_pos * (n_pos + 1) / 2
    auc = numerator / (n_pos * (n_sample - n_pos) + _AUC_DEN_EPS)
    varied = ~torch.all(torch.logical_or(q3 == q3[:, :, 0:1], q3 == 0), dim=-1)
    mask = (n_pos >= 1) * (n_pos < n_sample) * varied
    auc = (auc * mask).sum(-1)
    return (float(ce_sum), float(w_sum), float(pos), float(neg), float(acc_sum), float(w_sum),
            float(auc), int(mask.sum()))


def _states_numpy(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, ...]:
    """Same as :func:`_states_torch` in numpy (exact for 0/1 labels and unit weights)."""
    f32 = np.float32
    qd = np.clip(preds.astype(np.float64), _ETA, 1 - _ETA)
    wy, wny = (-weights) * labels, weights * (f32(1.0) - labels)
    ce_sum = float(np.sum(wy * np.log2(qd) - wny * np.log2(1.0 - qd)))
    w_sum = float(np.sum(weights, dtype=f32))
    pos = float(np.sum(weights * labels, dtype=f32))
    neg = float(np.sum(wny, dtype=f32))
    hits = (preds.astype(np.float64) >= 0.5).astype(f32) == labels
    acc_sum = float(np.sum(weights * hits, dtype=f32))
    n = preds.size
    sorted_y = labels[descending_order(preds, backend="introsort")] if _cross_label_tie(preds, labels) \
        else labels[np.argsort(-preds.astype(np.float64), kind="stable")]
    n_pos = f32(np.sum(sorted_y, dtype=f32))
    rank_sum = f32(np.sum(sorted_y.astype(np.float64) * np.arange(n, 0, -1)))
    numerator = f32(rank_sum - n_pos * (n_pos + f32(1)) / f32(2))
    auc = f32(numerator / f32(n_pos * (f32(n) - n_pos) + f32(_AUC_DEN_EPS)))
    varied = not bool(np.all((preds == preds[0]) | (preds == 0)))
    valid = bool(n_pos >= 1 and n_pos < n and varied)
    return (ce_sum, w_sum, pos, neg, acc_sum, w_sum, float(auc) if valid else 0.0, int(valid))


def _cross_label_tie(preds: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a score is shared by candidates with different labels (only then the tie order matters)."""
    order = np.lexsort((labels, preds))
    p, y = preds[order], labels[order]
    same = p[1:] == p[:-1]
    return bool(np.any(same & (y[1:] != y[:-1]))) or bool(np.isnan(preds).any())


def request_states(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                   backend: str = "auto") -> dict[str, float]:
    """What one request adds to each torchrec state (float32 inputs, as the log holds them).

    Keys: ``ce_sum``, ``weight_sum``, ``pos``, ``neg`` (NE), ``acc_sum``, ``acc_weight_sum``
    (accuracy), ``auc`` (the request's float32 AUC, 0 when skipped) and ``auc_count`` (1 or 0).
    ``backend``: ``"torch"``, ``"numpy"`` or ``"auto"`` (torch when importable).
    """
    # copies: torch.from_numpy wants writable arrays, log payloads are read-only buffers
    q = np.array(preds, dtype=np.float32).ravel()
    y = np.array(labels, dtype=np.float32).ravel()
    w = np.array(weights, dtype=np.float32).ravel()
    if not q.size == y.size == w.size:
        raise ValueError(f"dlrmv3: request has {q.size} predictions, {y.size} labels, {w.size} weights")
    if q.size == 0:
        raise ValueError("dlrmv3: request without candidates")
    torch = _torch() if backend in ("auto", "torch") else None
    if backend == "torch" and torch is None:
        raise RuntimeError("dlrmv3: torch is not installed")
    values = _states_torch(torch, q, y, w) if torch is not None else _states_numpy(q, y, w)
    return dict(zip(_STATE_KEYS, values, strict=True))


def _finish_torch(torch, tot: dict[str, float]) -> float:
    ce_sum, pos, neg, w_sum = (torch.tensor([tot[k]], dtype=torch.double)
                               for k in ("ce_sum", "pos", "neg", "weight_sum"))
    mean = (pos / w_sum).double().clamp_(min=_ETA, max=1 - _ETA)
    norm = -pos * torch.log2(mean) - neg * torch.log2(1.0 - mean)
    return float(ce_sum / norm)


def _finish_numpy(tot: dict[str, float]) -> float:
    mean = min(max(tot["pos"] / tot["weight_sum"], _ETA), 1 - _ETA)
    norm = -tot["pos"] * math.log2(mean) - tot["neg"] * math.log2(1.0 - mean)
    return tot["ce_sum"] / norm


def compute_metrics(requests: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    backend: str = "auto") -> dict[str, float]:
    """NE, accuracy and GAUC over ``(preds, labels, weights)`` per request, in log order.

    Every request counts (no de-duplication), as in the reference; see the module docstring for
    the formulas. ``backend`` as in :func:`request_states`.
    """
    if not requests:
        raise ValueError("dlrmv3: no requests to score")
    torch = _torch() if backend in ("auto", "torch") else None
    if backend == "torch" and torch is None:
        raise RuntimeError("dlrmv3: torch is not installed")
    kind = "torch" if torch is not None else "numpy"
    tot = dict.fromkeys(_STATE_KEYS, 0.0)
    tot["auc_count"] = 0
    candidates = 0
    for preds, labels, weights in requests:
        for key, value in request_states(preds, labels, weights, backend=kind).items():
            tot[key] += value  # float64 state += the request's value, like torchrec's states
        candidates += int(np.asarray(preds).size)
    ne = _finish_torch(torch, tot) if torch is not None else _finish_numpy(tot)
    acc = 0.0 if tot["acc_weight_sum"] == 0.0 else tot["acc_sum"] / tot["acc_weight_sum"]
    gauc = (tot["auc"] + _GAUC_EPS) / (tot["auc_count"] + 2 * _GAUC_EPS)
    return {
        "ne": float(ne), "accuracy": float(acc), "gauc": float(gauc),
        "gauc_num_samples": float(tot["auc_count"]), "num_requests": float(len(requests)),
        "num_candidates": float(candidates),
        "label_rate": tot["pos"] / tot["weight_sum"] if tot["weight_sum"] else float("nan"),
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
    """Score accuracy-log entries (``(qsl_idx, payload)``, in log order) like the reference.

    ``qsl_idx`` is ignored (the SUT serves requests in its own streaming order; the payload names
    the request). Every entry counts, repeats included, as in the reference script;
    ``unique_requests`` and ``coverage`` (unique requests / library size) are reported for
    information. ``params["backend"]`` (``"auto"``/``"torch"``/``"numpy"``) picks the engine.
    """
    requests = []
    unique: set[tuple[int, int]] = set()
    for _, data in entries:
        ts_idx, query_idx, preds, labels, weights = decode_payload(data)
        unique.add((ts_idx, query_idx))
        requests.append((preds, labels, weights))
    m = compute_metrics(requests, backend=str(params.get("backend", "auto")))
    m["unique_requests"] = float(len(unique))
    ref = load_reference(params)
    targets = {"ne": ref["ne"] * TOLERANCE, "accuracy": ref["accuracy"] * TOLERANCE,
               "gauc": ref["gauc"] * TOLERANCE}
    passed = (m["accuracy"] >= targets["accuracy"] and m["gauc"] >= targets["gauc"]
              and targets["ne"] <= m["ne"] <= ref["ne"] / TOLERANCE)
    total = getattr(library, "total_count", None)
    if total is not None:
        m["coverage"] = len(unique) / float(total)
    return AccuracyResult(metrics=m, accuracy_txt=format_accuracy_txt(m, ref, passed),
                          passed=passed, targets=targets)
