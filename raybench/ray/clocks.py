"""How the shards agreed on T0, and how far their wall clocks disagree.

T0 agreement: the driver broadcasts one wall-clock time T0 (``time.time_ns()`` + ``start_lead_s``);
each shard converts it once to its own monotonic clock (``t0_mono = mono_now + (T0 - wall_now)``)
and from then on reads only that clock. So every latency is a difference of two readings of one
monotonic clock and no wall-clock step or skew can change it; what skew changes is *when* each
shard starts: a shard whose wall clock is ahead by d starts d early.

Skew estimate (NTP-style, from the driver's own measurement): before T0 the driver asks each
shard for its wall clock ``k`` times over a Ray round trip and keeps the sample with the
shortest round trip::

    skew_ns = shard_wall_ns - (driver_send_ns + driver_receive_ns) / 2     (shard minus driver)
    |true skew - skew_ns| <= rtt_ns / 2                                     (skew_bound_ns)

``max_skew_ns`` is the spread of all the clocks involved (the driver's and every shard's):
``max(0, skews) - min(0, skews)``, with ``max_skew_bound_ns`` the sum of the two bounds involved.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["T0_AGREEMENT", "clock_summary", "measure_skew", "parse_wall_offsets"]

T0_AGREEMENT = "broadcast wall-clock T0, converted once per shard to its monotonic clock"
TEST_OFFSET_ENV = "RAYBENCH_TEST_WALL_OFFSET_NS"


def parse_wall_offsets(text: str | None) -> dict[int, int]:
    """``"1:50000000,2:-1000"`` -> ``{1: 50000000, 2: -1000}`` (test-only wall-clock offsets).

    ``RAYBENCH_TEST_WALL_OFFSET_NS`` shifts the given shards' wall clocks (what they read as
    ``time.time_ns()``) by that many nanoseconds, to test skew reporting on one machine. A bare
    number applies to shard 0.

    Raises:
        ValueError: naming the variable, for anything else.
    """
    out: dict[int, int] = {}
    if not text or not text.strip():
        return out
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        shard, sep, ns = item.rpartition(":")
        try:
            out[int(shard) if sep else 0] = int(ns)
        except ValueError:
            raise ValueError(f"{TEST_OFFSET_ENV}: expected shard:offset_ns[,shard:offset_ns...], got {text!r}") from None
    return out


def measure_skew(shards: list[Any], samples: int = 5, timeout_s: float = 5.0) -> list[dict[str, int] | None]:
    """Each shard's wall-clock skew against the driver, from the min-RTT of ``samples`` round trips.

    Shards are measured one after another (each round trip alone on the wire, so the RTTs stay
    short). A shard that does not answer within ``timeout_s`` gets ``None``.

    Returns:
        Per shard: ``{"skew_ns", "rtt_ns", "skew_bound_ns"}`` (see the module docstring).
    """
    import ray

    out: list[dict[str, int] | None] = []
    for shard in shards:
        best: tuple[int, int] | None = None  # (rtt, skew)
        try:
            for _ in range(samples):
                t1 = time.time_ns()
                remote_ns = ray.get(shard.wall_clock_ns.remote(), timeout=timeout_s)
                t2 = time.time_ns()
                rtt = t2 - t1
                skew = int(remote_ns) - (t1 + t2) // 2
                if best is None or rtt < best[0]:
                    best = (rtt, skew)
        except Exception:  # a shard that cannot answer now will fail the run on its own; keep what it said
            pass
        out.append(None if best is None else {"skew_ns": best[1], "rtt_ns": best[0], "skew_bound_ns": best[0] // 2})
    return out


def clock_summary(t0_wall_ns: int, skews: list[dict[str, int] | None], infos: list[dict[str, Any] | None],
                  nodes: list[str]) -> dict[str, Any]:
    """The ``clock`` block of ``result.json`` (see the module docstring for the definitions).

    Args:
        t0_wall_ns: the broadcast T0 (driver's wall clock).
        skews: :func:`measure_skew` per shard.
        infos: what each shard recorded when it converted T0 (``LoadGenShard.clock_info``), or None.
        nodes: each shard's node label.
    """
    per: list[dict[str, Any]] = []
    for k, (sk, info) in enumerate(zip(skews, infos, strict=True)):
        row: dict[str, Any] = {"shard": k, "node": nodes[k] if k < len(nodes) else None}
        row.update(sk or {"skew_ns": None, "rtt_ns": None, "skew_bound_ns": None})
        info = info or {}
        for key in ("t0_seen_wall_ns", "t0_lead_ns", "t0_mono_ns", "mono_wall_offset_ns", "wall_offset_test_ns"):
            row[key] = info.get(key)
        per.append(row)
    known = [(r["skew_ns"], r["skew_bound_ns"]) for r in per if r["skew_ns"] is not None]
    clocks = [(0, 0), *known]  # the driver's clock is the reference: skew 0, known exactly
    hi = max(clocks)
    lo = min(clocks)
    return {
        "t0_agreement": T0_AGREEMENT,
        "t0_wall_ns": int(t0_wall_ns),
        "max_skew_ns": int(hi[0] - lo[0]),
        "max_skew_bound_ns": int(hi[1] + lo[1]),
        "skew_method": "per shard, the shortest of several Ray round trips before T0: shard wall clock "
                       "minus the driver's midpoint; bound = rtt/2",
        "per_shard": per,
    }
