"""Token latencies: the one definition of TPOT (and of meeting the goodput SLOs) that metrics,
sweeps and reports share."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["inter_token_latencies_ns", "meets_slo", "tpot_ns"]


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


def meets_slo(latency_ns: Any, ttft_ns: Any, n_tokens: Any, slo: dict[str, int]) -> np.ndarray:
    """Per successful request, whether it met every SLO in ``slo`` (``ttft`` / ``tpot`` / ``e2el``, ns).

    ``ttft_ns`` is negative where no first token was streamed. A request meets ``e2el`` when its
    latency <= the bound; ``ttft`` when it streamed and TTFT <= the bound; ``tpot`` when it has
    one output token or fewer (no TPOT), or it streamed and its TPOT (:func:`tpot_ns`) <= the bound.

    Example:
        >>> meets_slo([30, 90, 20], [10, 60, -1], [3, 3, 1], {"ttft": 50, "tpot": 20}).tolist()
        [True, False, False]
    """
    lat = np.asarray(latency_ns, dtype=np.int64)
    ttft = np.asarray(ttft_ns, dtype=np.int64)
    n = np.asarray(n_tokens, dtype=np.int64)
    met = np.ones(lat.shape[0], dtype=bool)
    streamed = ttft >= 0
    if "e2el" in slo:
        met &= lat <= slo["e2el"]
    if "ttft" in slo:
        met &= streamed & (ttft <= slo["ttft"])
    if "tpot" in slo:
        tpot = (lat - np.maximum(ttft, 0)) // np.maximum(n - 1, 1)
        met &= (n <= 1) | (streamed & (np.maximum(tpot, 0) <= slo["tpot"]))
    return met
