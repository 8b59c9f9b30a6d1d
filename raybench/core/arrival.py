"""Server load shapes beyond MLPerf's Poisson: gamma, linear ramp and trace replay schedules.

Each generator returns ``(intended offsets in ns, generated duration in ns)`` like
:func:`raybench.core.plan.poisson_schedule`, and follows LoadGen's generation rule (queries are
generated while the previous timestamp is below the generation duration or fewer than
``min_queries`` exist), except the trace, whose count is its own. They are built once for the
whole run from the ``schedule_rng_seed`` (stream tag = the loaded-set index, as Poisson), so the
global schedule does not depend on the number of shards. ``scenario.arrival`` on
:class:`~raybench.core.scenarios.server.Server` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from raybench.core.plan import poisson_schedule, rng

__all__ = ["gamma_schedule", "ramp_schedule", "trace_schedule"]


def _cut(chunks: Iterator[np.ndarray], gen_duration_ns: int, min_queries: int) -> tuple[np.ndarray, int]:
    """LoadGen's generation rule over a stream of timestamps.

    ``chunks`` yields consecutive runs of absolute timestamps (ns); each run ends with the first
    stamp of the next run (one element of overlap), so the stamp after the last query is known.
    Query ``j`` is emitted, and generation goes on while ``stamp[j] < gen_duration`` or
    ``j + 1 < min_queries``. Returns the emitted stamps and the stamp after the last one.
    """
    out: list[np.ndarray] = []
    n = 0
    for stamps in chunks:
        want = stamps.shape[0] - 1
        stop = np.nonzero((stamps[:-1] >= gen_duration_ns) & (n + np.arange(want) + 1 >= min_queries))[0]
        if stop.size:
            k = int(stop[0]) + 1
            out.append(stamps[:k])
            return np.concatenate(out), int(stamps[k])
        out.append(stamps[:-1])
        n += want
    raise AssertionError("timestamp stream ended")  # pragma: no cover - the streams are endless


def _chunk_size(qps: float, gen_duration_ns: int, min_queries: int, n: int) -> int:
    return max(1024, int(gen_duration_ns / 1e9 * qps * 1.1) + min_queries - n + 16)


def gamma_schedule(qps: float, burstiness: float, seed: int, tag: int, gen_duration_ns: int,
                   min_queries: int) -> tuple[np.ndarray, int]:
    """Gamma-distributed gaps with mean ``1/qps`` and shape ``burstiness`` (truncated to ns).

    ``CV^2 = 1/burstiness``: below 1 is burstier than Poisson, above 1 more regular (vLLM's
    ``--burstiness``). ``burstiness == 1`` *is* Poisson and returns :func:`poisson_schedule`'s
    schedule bit for bit. Same generation rule and seed stream as :func:`poisson_schedule`.
    """
    if qps <= 0:
        raise ValueError("settings.server_target_qps must be > 0")
    if not burstiness > 0:
        raise ValueError(f"scenario.arrival.burstiness: must be > 0, got {burstiness}")
    if burstiness == 1.0:
        return poisson_schedule(qps, seed, tag, gen_duration_ns, min_queries)
    g = rng(seed, tag)

    def chunks() -> Iterator[np.ndarray]:
        t = n = 0
        while True:
            want = _chunk_size(qps, gen_duration_ns, min_queries, n)
            gaps = np.floor(g.gamma(burstiness, 1.0 / (qps * burstiness), size=want) * 1e9).astype(np.int64)
            stamps = t + np.concatenate([[0], np.cumsum(gaps)])
            yield stamps
            n += want
            t = int(stamps[-1])

    return _cut(chunks(), gen_duration_ns, min_queries)


def ramp_schedule(start_qps: float, end_qps: float, ramp_ns: int, seed: int, tag: int, gen_duration_ns: int,
                  min_queries: int, random: bool = True) -> tuple[np.ndarray, int]:
    """A linear ramp of the rate from ``start_qps`` to ``end_qps`` over ``ramp_ns``, then ``end_qps``.

    With ``Λ(t) = r0·t + (r1 - r0)·t²/(2·D)`` for ``t <= D`` (and ``Λ(D) + r1·(t - D)`` after) the
    expected number of arrivals by ``t``, query ``k`` is sent at ``Λ⁻¹(L_k)``:

    * ``random=True``: ``L_k`` = the sum of ``k`` unit exponentials (a Poisson process whose rate
      follows the ramp; seeded like :func:`poisson_schedule`);
    * ``random=False``: ``L_k = k`` (evenly spaced in expected count: a deterministic ramp).

    ``Λ⁻¹(L) = 2L / (r0 + sqrt(r0² + 2(r1 - r0)L/D))`` on the ramp (stable for ``r0 = r1`` and for
    ``r0 = 0``). Times are truncated to whole ns; the generation rule is LoadGen's.
    """
    r0, r1, d = float(start_qps), float(end_qps), ramp_ns / 1e9
    if r0 < 0 or r1 <= 0:
        raise ValueError(f"scenario.arrival: a ramp needs start_qps >= 0 and end_qps > 0, got {r0} -> {r1}")
    if d <= 0:
        raise ValueError("scenario.arrival.duration_ms: a ramp needs a duration > 0 (or min_duration_ms > 0)")
    lam_d = (r0 + r1) * d / 2.0
    g = rng(seed, tag)

    def inverse(lam: np.ndarray) -> np.ndarray:
        on_ramp = lam <= lam_d
        lr = np.where(on_ramp, lam, 0.0)
        t_ramp = 2.0 * lr / (r0 + np.sqrt(np.maximum(r0 * r0 + 2.0 * (r1 - r0) * lr / d, 0.0)) + (lr == 0))
        t = np.where(on_ramp, t_ramp, d + (lam - lam_d) / r1)
        return np.floor(t * 1e9).astype(np.int64)

    def chunks() -> Iterator[np.ndarray]:
        lam0 = 0.0
        n = 0
        while True:
            want = _chunk_size(max(r0, r1), gen_duration_ns, min_queries, n)
            steps = g.exponential(1.0, size=want) if random else np.ones(want)
            lam = lam0 + np.concatenate([[0.0], np.cumsum(steps)]) if random else n + np.arange(want + 1, dtype=np.float64)
            yield inverse(lam)
            n += want
            lam0 = float(lam[-1])

    return _cut(chunks(), gen_duration_ns, min_queries)


def trace_schedule(timestamps_ns: np.ndarray, speedup: float) -> tuple[np.ndarray, int]:
    """A recorded trace's send times, sped up: ``(t_i - t_0) / speedup``, truncated to whole ns.

    Every entry of the trace is sent once (the trace fixes the count); the generated duration is
    the last send time.
    """
    if not speedup > 0:
        raise ValueError(f"scenario.arrival.speedup: must be > 0, got {speedup}")
    ts = np.asarray(timestamps_ns, dtype=np.int64).reshape(-1)
    if ts.size == 0:
        raise ValueError("scenario.arrival: the trace has no timestamps")
    if np.any(np.diff(ts) < 0):
        raise ValueError("scenario.arrival: trace timestamps must not decrease")
    rel = ts - ts[0]
    out = rel if speedup == 1.0 else np.floor(rel / float(speedup)).astype(np.int64)
    return out, int(out[-1])
