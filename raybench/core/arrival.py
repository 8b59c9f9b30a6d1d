"""Server load shapes beyond MLPerf's Poisson: gamma, linear ramp and trace replay schedules.

Each generator returns ``(intended offsets in ns, generated duration in ns)`` like
:func:`raybench.core.plan.poisson_schedule`, and follows LoadGen's generation rule (queries are
generated while the previous timestamp is below the generation duration or fewer than
``min_queries`` exist), except the trace, whose count is its own. They are drawn from the
``schedule_rng_seed`` (stream tag = the loaded-set index, as Poisson) in chunks whose size does
not change the values (:mod:`raybench.core.plan_stream`), so the global schedule depends neither
on the number of shards nor on how it is generated. ``scenario.arrival`` on
:class:`~raybench.core.scenarios.server.Server` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from raybench.core.plan import poisson_schedule, rng

__all__ = ["check_ramp", "gamma_gaps", "gamma_schedule", "ramp_schedule", "ramp_stamps", "trace_schedule"]


def gamma_gaps(g: np.random.Generator, qps: float, burstiness: float, n: int) -> np.ndarray:
    """``n`` gamma gaps (ns, truncated) with mean ``1/qps`` and shape ``burstiness``."""
    return np.floor(g.gamma(burstiness, 1.0 / (qps * burstiness), size=n) * 1e9).astype(np.int64)


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
    from raybench.core.plan_stream import ScheduleSpec

    return _materialise(ScheduleSpec("gamma", qps, seed, tag, burstiness=burstiness), gen_duration_ns, min_queries)


def _materialise(spec: object, gen_duration_ns: int, min_queries: int) -> tuple[np.ndarray, int]:
    from raybench.core.plan_stream import count_schedule, first_stamps

    n, gen_dur, _ = count_schedule(spec, gen_duration_ns, min_queries)  # type: ignore[arg-type]
    return first_stamps(spec, n), gen_dur  # type: ignore[arg-type]


def check_ramp(start_qps: float, end_qps: float, ramp_ns: int) -> None:
    """Refuse a ramp that cannot be scheduled (one line naming the field)."""
    if start_qps < 0 or end_qps <= 0:
        raise ValueError(f"scenario.arrival: a ramp needs start_qps >= 0 and end_qps > 0, got {start_qps} -> {end_qps}")
    if ramp_ns <= 0:
        raise ValueError("scenario.arrival.duration_ms: a ramp needs a duration > 0 (or min_duration_ms > 0)")


def ramp_stamps(start_qps: float, end_qps: float, ramp_ns: int, seed: int, tag: int, random: bool,
                chunk: int) -> Iterator[np.ndarray]:
    """The ramp's stamps (see :func:`ramp_schedule`), ``chunk`` at a time from query 0 (endless).

    The expected counts ``L_k`` are summed in order, each chunk carrying the previous sum, so the
    stamps do not depend on ``chunk``.
    """
    check_ramp(start_qps, end_qps, ramp_ns)
    r0, r1, d = float(start_qps), float(end_qps), ramp_ns / 1e9
    lam_d = (r0 + r1) * d / 2.0
    g = rng(seed, tag)

    def inverse(lam: np.ndarray) -> np.ndarray:
        on_ramp = lam <= lam_d
        lr = np.where(on_ramp, lam, 0.0)
        t_ramp = 2.0 * lr / (r0 + np.sqrt(np.maximum(r0 * r0 + 2.0 * (r1 - r0) * lr / d, 0.0)) + (lr == 0))
        t = np.where(on_ramp, t_ramp, d + (lam - lam_d) / r1)
        return np.floor(t * 1e9).astype(np.int64)

    n = 0
    lam_prev: float | None = None
    while True:
        if not random:
            lam = np.arange(n, n + chunk, dtype=np.float64)
        elif lam_prev is None:
            lam = np.cumsum(np.concatenate([[0.0], g.exponential(1.0, size=chunk - 1)]))
        else:
            lam = np.cumsum(np.concatenate([[lam_prev], g.exponential(1.0, size=chunk)]))[1:]
        n += chunk
        lam_prev = float(lam[-1])
        yield inverse(lam)


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
    from raybench.core.plan_stream import ScheduleSpec

    check_ramp(start_qps, end_qps, ramp_ns)
    spec = ScheduleSpec("ramp", float(start_qps), seed, tag, end_qps=float(end_qps), ramp_ns=int(ramp_ns), random=random)
    return _materialise(spec, gen_duration_ns, min_queries)


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
