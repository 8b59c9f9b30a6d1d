"""``raybench search-peak``: LoadGen's FindPeakPerformance mode, one full run per probe.

LoadGen (``loadgen/loadgen.cc`` ``FindPeakPerformanceMode``, helpers in
``test_settings_internal.h`` ``find_peak_performance``) searches the Server scenario's target QPS:

1. **Base**: run at the requested ``server_target_qps``; if that run misses the latency bounds
   the search stops (LoadGen logs an error: the lower bound must come from the user).
2. **Boundaries** (``FindBoundaries``): widen ``u = l * (1 + server_find_peak_qps_boundary_step_size)``
   (default step 1: doubling) and run at ``u``; while ``u`` meets the bounds it becomes the new
   ``l``; the first ``u`` that misses them closes the bracket ``[l, u)``.
3. **Bisection** (``FindPeakPerformanceBinarySearch``): run at ``m = l + (u - l) / 2``; ``m``
   meeting the bounds replaces ``l``, else ``u``; stop when
   ``floor(l * 10^d) + 1 >= floor(u * 10^d)`` with ``d = server_find_peak_qps_decimals_of_precision``
   (default 1). The peak is ``l``.

"Meets the bounds" is LoadGen's ``PerfConstraintsMet``: the run's ``target_latency_percentile``
latency (TTFT and TPOT for token workloads) is within its bound; min duration and min query count
are left to the user, as in LoadGen. ``criterion="valid"`` asks for the whole verdict instead
(VALID: also min duration, min queries, early stopping and raybench's own rules).

For token workloads served closed-loop (scenario ``Concurrency``) the searched field is
``target_concurrency``, with LoadGen's rules for its integer field (MultiStream's
``samples_per_query``): widen by doubling, bisect ``l + (u - l) // 2``, stop when ``l + 1 >= u``.
The bounds are the Server ones (p``server_target_latency_percentile`` TTFT <= ``server_ttft_latency``
and TPOT <= ``server_tpot_latency``, or latency <= ``server_target_latency_ns`` without tokens),
read from the run's merged histograms (relative error <= 1/2048).

Every probe is an ordinary run directory under the search directory; ``peak_summary.json`` lists
the probes in order and the peak; ``report.html`` and ``plots/peak.png`` plot probe value against
the bounded percentile, marked by verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raybench.config import RunConfig, load_run_config
from raybench.core.logs.atomic import atomic_write_json
from raybench.run import Executor, RunOutcome, resolve_run_settings, run_benchmark
from raybench.signals import Interrupted, interrupted_by

__all__ = ["PeakResult", "Probe", "is_finished", "mid_value", "run_peak_search", "widen"]


@dataclass
class Probe:
    """One run of the search (a row of ``peak_summary.json``)."""

    index: int
    phase: str
    field: str
    value: float
    ok: bool
    validity: str
    percentile: float
    p_latency_ms: float
    bound_ms: float
    run_dir: str
    reasons: list[str] = field(default_factory=list)
    p_ttft_ms: float | None = None
    p_tpot_ms: float | None = None


@dataclass
class PeakResult:
    """What :func:`run_peak_search` found: ``peak`` is None when the base run misses the bounds."""

    search_dir: Path
    scenario: str
    field: str
    peak: float | None
    lower: float | None
    upper: float | None
    probes: list[Probe]
    message: str
    files: list[Path] = field(default_factory=list)


def widen(value: float, integer: bool, step: float) -> float:
    """LoadGen's ``WidenPerformanceField``: ``value * (1 + step)`` (Server), ``value * 2`` (integer fields)."""
    return float(int(value) * 2) if integer else value * (1.0 + step)


def mid_value(lower: float, upper: float, integer: bool) -> float:
    """LoadGen's ``MidOfBoundaries``: ``l + (u - l) / 2`` (integer division for integer fields)."""
    if integer:
        return float(int(lower) + (int(upper) - int(lower)) // 2)
    return lower + (upper - lower) / 2


def is_finished(lower: float, upper: float, integer: bool, decimals: int) -> bool:
    """LoadGen's ``IsFinished``: ``l + 1 >= u`` (integers) or ``floor(l*10^d) + 1 >= floor(u*10^d)``."""
    if integer:
        return int(lower) + 1 >= int(upper)
    scale = 10.0 ** decimals
    return math.floor(lower * scale) + 1 >= math.floor(upper * scale)


def _judge(outcome: RunOutcome, scenario: str, criterion: str) -> tuple[bool, float, float, float | None, float | None]:
    """(meets the bounds, percentile, the bounded percentile in ms, TTFT ms, TPOT ms)."""
    m, s = outcome.metrics, outcome.result["settings"]
    p = float(s["server_target_latency_percentile"])
    h = m.histograms

    def pct(name: str) -> float | None:
        hist = h.get(name)
        return hist.percentile(p) / 1e6 if hist is not None and hist.count else None

    ttft, tpot = pct("ttft"), pct("tpot")
    lat = pct("latency")
    if scenario == "Server":
        ok = bool(m.perf_constraints_met)
    elif s.get("use_token_latencies") and ttft is not None:
        ok = ttft <= s["server_ttft_latency"] / 1e6 and (tpot is None or tpot <= s["server_tpot_latency"] / 1e6)
    else:
        ok = lat is not None and lat <= s["server_target_latency_ns"] / 1e6
    if criterion == "valid":
        ok = ok and m.validity == "VALID"
    shown = ttft if s.get("use_token_latencies") and ttft is not None else lat
    return ok, p, float(shown if shown is not None else math.nan), ttft, tpot


def run_peak_search(
    search_dir: str | Path,
    overrides: Sequence[str],
    *,
    config_path: str | Path | None = None,
    start: float | None = None,
    criterion: str = "constraints",
    max_probes: int = 40,
    executor_factory: Callable[[RunConfig], Executor] | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> PeakResult:
    """Search the peak (see the module docstring); every probe is a run under ``search_dir``.

    Args:
        search_dir: where the probe run directories, ``peak_summary.json`` and the report go.
        overrides: ``--set`` style overrides shared by every probe (workload, sut, scenario, settings...).
        start: the lower bound to check first (default: the resolved ``server_target_qps`` or
            ``target_concurrency``).
        criterion: ``"constraints"`` (LoadGen) or ``"valid"``.
        max_probes: the most runs the search may make (it stops with the bracket it has).
        executor_factory: builds the executor for a probe's config (default: in-process).
        on_probe: called after each probe.

    Raises:
        ValueError / ConfigError: a bad scenario, start value, criterion or config (before any run).
    """
    if criterion not in ("constraints", "valid"):
        raise ValueError(f"criterion: expected 'constraints' or 'valid', got {criterion!r}")
    if max_probes < 1:
        raise ValueError(f"max_probes: must be >= 1, got {max_probes}")
    base = load_run_config(config_path, list(overrides))
    scenario = base.scenario.name
    if scenario not in ("Server", "Concurrency"):
        raise ValueError(f"scenario: peak search runs Server (target QPS) or Concurrency (streams), not {scenario}")
    if base.mode not in (None, "PerformanceOnly"):
        raise ValueError(f"mode: peak search makes performance runs, not {base.mode}")
    settings, _ = resolve_run_settings(base)
    integer = scenario == "Concurrency"
    fld = "target_concurrency" if integer else "target_qps"
    value = float(start if start is not None else (settings.target_concurrency if integer else settings.server_target_qps))
    if not (value > 0 and math.isfinite(value)) or (integer and value != int(value)):
        raise ValueError(f"start: need a positive {'integer ' if integer else ''}{fld}, got {value:g}")
    step = float(settings.server_find_peak_qps_boundary_step_size)
    decimals = int(settings.server_find_peak_qps_decimals_of_precision)
    if not integer and step <= 0:
        raise ValueError(f"settings.server_find_peak_qps_boundary_step_size: must be > 0, got {step:g}")
    out = Path(search_dir)
    out.mkdir(parents=True, exist_ok=True)
    probes: list[Probe] = []

    def probe(v: float, phase: str) -> bool:
        i = len(probes)
        tag = f"probe{i:02d}-c{int(v)}" if integer else f"probe{i:02d}-qps{v:.6g}"
        val = str(int(v)) if integer else repr(float(v))
        cfg = load_run_config(config_path, [*overrides, f"scenario.{fld}={val}", f"run_dir={out / tag}"])
        executor = executor_factory(cfg) if executor_factory else None
        try:
            outcome = run_benchmark(cfg, executor)
        finally:
            close = getattr(executor, "close", None)
            if callable(close):
                close()
        ok, p, shown, ttft, tpot = _judge(outcome, scenario, criterion)
        s = outcome.result["settings"]
        tokens = bool(s.get("use_token_latencies")) and ttft is not None
        bound = (s["server_ttft_latency"] if tokens else s["server_target_latency_ns"]) / 1e6
        pr = Probe(index=i, phase=phase, field=fld, value=float(v), ok=ok, validity=outcome.metrics.validity,
                   percentile=p, p_latency_ms=shown, bound_ms=bound, run_dir=str(outcome.run_dir),
                   reasons=list(outcome.metrics.invalid_reasons), p_ttft_ms=ttft, p_tpot_ms=tpot)
        probes.append(pr)
        if on_probe:
            on_probe(pr)
        signum = interrupted_by(pr.reasons)
        if signum is not None:  # the probe was cut short: its verdict says nothing about the peak
            raise Interrupted(signum)
        return ok

    bracket: list[float | None] = [None, None]  # [lower, upper] as the search goes

    def search() -> str:
        if not probe(value, "base"):
            return f"the lower bound {fld}={value:g} misses the bounds; start lower (--start)"
        lower, upper = value, None
        bracket[0] = lower
        while len(probes) < max_probes:
            u = widen(lower, integer, step)
            if probe(u, "boundary"):
                lower = bracket[0] = u
            else:
                upper = bracket[1] = u
                break
        while upper is not None and not is_finished(lower, upper, integer, decimals) and len(probes) < max_probes:
            m = mid_value(lower, upper, integer)
            if probe(m, "bisect"):
                lower = bracket[0] = m
            else:
                upper = bracket[1] = m
        if upper is None:
            return f"every probe up to {fld}={lower:g} met the bounds; stopped after {max_probes} probes"
        if not is_finished(lower, upper, integer, decimals):
            return f"stopped after {max_probes} probes with the bracket [{lower:g}, {upper:g})"
        return f"bracket [{lower:g}, {upper:g}) within " + ("1 stream" if integer else f"{decimals} decimal(s) of QPS")

    def write(message: str, peak: float | None) -> PeakResult:
        res = PeakResult(search_dir=out, scenario=scenario, field=fld, peak=peak, lower=bracket[0],
                         upper=bracket[1], probes=probes, message=message)
        summary = {"scenario": scenario, "field": fld, "criterion": criterion, "peak": peak, "lower": bracket[0],
                   "upper": bracket[1], "boundary_step_size": step, "decimals_of_precision": decimals,
                   "message": message, "probes": [asdict(p) for p in probes]}
        res.files.append(atomic_write_json(out / "peak_summary.json", summary))
        try:
            from raybench.report.peak import write_peak_report

            res.files += write_peak_report(out)
        except ImportError:  # matplotlib missing: the JSON is the result
            pass
        return res

    try:
        message = search()
    except BaseException as exc:  # a probe that cannot run (or Ctrl-C): keep what the search measured
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        write(f"stopped at probe {len(probes)}: {first}", None)
        raise
    return write(message, bracket[0])
