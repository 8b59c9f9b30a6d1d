"""Token latencies: the one definition of TPOT that metrics, sweeps and reports share."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["inter_token_latencies_ns", "tpot_ns"]


def tpot_ns(latency_ns: Any, ttft_ns: Any, n_tokens: Any) -> np.ndarray:
    """Time per output token as LoadGen computes it: ``(latency - TTFT) // (n_tokens - 1)``.

    Integer nanoseconds (LoadGen divides integer durations). Only samples with more than one
    token have a TPOT; the others are left out, so the result may be shorter than the inputs.

    Example:
        >>> tpot_ns([100, 50], [10, 50], [4, 1]).tolist()
        [30]
    """
    lat = np.asarray(latency_ns, dtype=np.int64)
    ttft = np.asarray(ttft_ns, dtype=np.int64)
    n = np.asarray(n_tokens, dtype=np.int64)
    multi = n > 1
    return (lat[multi] - ttft[multi]) // (n[multi] - 1)


def inter_token_latencies_ns(chunk_ns: Any) -> np.ndarray:
    """Gaps between consecutive chunk arrival times (``n`` chunks give ``n - 1`` gaps)."""
    t = np.asarray(chunk_ns, dtype=np.int64)
    return np.diff(t) if t.size > 1 else np.zeros(0, dtype=np.int64)
