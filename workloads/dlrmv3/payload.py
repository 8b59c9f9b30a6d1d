"""The DLRMv3 response payload: what the SUT returns per request and the scorer reads back.

float32, as the MLPerf reference's ``accuracy.py`` reads it: ``[ts_idx, query_idx, preds x n,
labels x n, weights x n, n]``, length ``3 n + 3``. ``(ts_idx, query_idx)`` identify the request
(the library's ``key(index)``); labels come from the sample (``sample["labels"]``).

This module is the contract between the SUT (``reference_suts/dlrmv3_hstu``) and the workload's
scorer; it imports only numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_payload", "encode_payload"]


def encode_payload(ts_idx: int, query_idx: int, preds: np.ndarray, labels: np.ndarray,
                   weights: np.ndarray | None = None) -> bytes:
    """Bytes of one response in the reference layout."""
    n = int(np.asarray(preds).size)
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    arr = np.concatenate([[ts_idx, query_idx], np.asarray(preds, np.float32).ravel(),
                          np.asarray(labels, np.float32).ravel(), w.ravel(), [n]])
    return arr.astype(np.float32).tobytes()


def decode_payload(data: bytes) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_payload` (``ValueError`` on a malformed payload)."""
    arr = np.frombuffer(data, dtype=np.float32)
    if arr.size < 3:
        raise ValueError(f"dlrmv3 payload too short ({arr.size} floats)")
    n = int(arr[-1])
    if arr.size != 3 * n + 3:
        raise ValueError(f"dlrmv3 payload has {arr.size} floats, expected 3*{n}+3")
    return int(arr[0]), int(arr[1]), arr[2:2 + n], arr[2 + n:2 + 2 * n], arr[2 + 2 * n:2 + 3 * n]
