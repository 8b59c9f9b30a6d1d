"""MLPerf Endpoints sweeps: one run per concurrency (or per Poisson target QPS), then a Pareto chart.

A sweep is a list of ordinary raybench runs that share one config:

- **Concurrency mode** (the Endpoints Pareto sweep): points chosen by the Endpoints rules
  (:func:`raybench.core.endpoints.select_sweep_points` from ``c_min``/``c_max``/``n_points``) or
  given explicitly; each point is a closed-loop run (scenario ``Concurrency``,
  ``settings.target_concurrency = N``).
- **QPS mode**: a list of target QPS values, each a Poisson ``Server`` run
  (``settings.server_target_qps = q``).
- **Rate mode** (``--rates``): a list of request rates, each a ``Server`` run at that
  ``server_target_qps`` with the load shape of the shared config (``scenario.arrival``: Poisson by
  default, or constant / gamma / ramp, whose ``end_qps`` defaults to the rate). Its points are
  ``qps_target`` rows like QPS mode; ``result_summary.json`` names the shape in ``load_pattern``.

Warm-up is excluded *inside each run*, not by a separate run, so the queries measured are served
by the very SUT instance (and, for ``vllm``, the very server process) that the warm-up warmed:
the run is extended by ``warmup_s`` (its ``min_duration_ms`` grows by that much), and the point's
metrics keep only queries issued at or after ``warmup_s`` from the start and after the first
``warmup_queries`` issues. The run's own MLPerf verdict (``result.json``) still covers the whole
run, warm-up included; it is reported as ``validity``.

Per point, from the kept queries (``ok`` = completed without error):

- ``elapsed = last completion - first kept issue``; ``system_tps = output tokens / elapsed``;
  ``qps = completed / elapsed``;
- TTFT = first token - issue, latency = completion - issue, TPOT = LoadGen's
  ``(latency - TTFT) / (tokens - 1)`` (equal to Endpoints' definition when every chunk holds one
  token, which is what ``query.token()`` per chunk records);
- ``tps_per_user = 1000 / TPOT p90 (ms)``, ``ttft_p90_ms`` (p90 = an observed value, numpy
  ``method="lower"``, as the Endpoints report);
- ``result_summary.json`` in the Endpoints schema, with early-stopping percentile estimates
  (LoadGen's latency early-stopping math at confidence 0.99).

Files in the sweep directory: ``sweep_summary.json`` (``{"mode", "points": [...], "frontier":
[...]}``, each point ``concurrency`` or ``qps``, ``system_tps``, ``tps_per_user``, ``ttft_p90_ms``,
``qps``, ``validity``, ``run_dir``, ...), one run directory per point (with its
``result_summary.json``), and PNG charts: ``pareto.png`` (System TPS vs TPS/user, the official
step function, no interpolation), ``tps_vs_<x>.png``, ``ttft_p90_vs_<x>.png``,
``interactivity_vs_<x>.png``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raybench.config import RunConfig, load_run_config
from raybench.core.early_stopping import latency_early_stopping
from raybench.core.endpoints import (
    ParetoPoint,
    build_result_summary,
    pareto_frontier,
    select_sweep_points,
    step_function,
    validate_sweep_points,
)
from raybench.core.logs.atomic import atomic_write_json, to_jsonable
from raybench.core.stats import ExactStats
from raybench.core.tokens import meets_slo, tpot_ns
from raybench.run import Executor, RunOutcome, run_benchmark

__all__ = ["PointResult", "SweepResult", "point_metrics", "plot_sweep", "run_sweep", "sweep_values"]

_PCTS = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass
class PointResult:
    """One sweep point (a row of ``sweep_summary.json``)."""

    concurrency: int | None
    qps_target: float | None
    run_dir: str
    validity: str
    invalid_reasons: list[str]
    n_completed: int
    n_failed: int
    n_warmup: int
    output_tokens: int
    elapsed_s: float
    system_tps: float
    tps_per_user: float | None
    tpot_p90_ms: float | None
    ttft_p90_ms: float | None
    qps: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    tpot_ms: dict[str, float] = field(default_factory=dict)
    early_stopping_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    goodput: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    """What :func:`run_sweep` produced."""

    sweep_dir: Path
    mode: str
    points: list[PointResult]
    frontier: list[int | float]
    files: list[Path]


def sweep_values(
    *,
    concurrencies: Sequence[int] | None = None,
    c_min: int | None = None,
    c_max: int | None = None,
    n_points: int = 7,
    qps: Sequence[float] | None = None,
    rates: Sequence[float] | None = None,
) -> tuple[str, list[int] | list[float]]:
    """``("concurrency", points)``, ``("qps", values)`` or ``("rate", values)`` from exactly one way
    of naming them.

    Raises:
        ValueError: none or several of concurrencies / c_min+c_max / qps / rates, or bad values.
    """
    given = [concurrencies is not None, c_min is not None or c_max is not None, qps is not None, rates is not None]
    if sum(given) != 1:
        raise ValueError("sweep: give exactly one of --concurrency LIST, --c-min/--c-max, --qps LIST, --rates LIST")
    if rates is not None:
        vals = [float(r) for r in rates]
        if not vals or any(not (r > 0 and math.isfinite(r)) for r in vals):
            raise ValueError(f"rates: need positive request rates, got {list(rates)}")
        return "rate", vals
    if qps is not None:
        vals = [float(q) for q in qps]
        if not vals or any(not (q > 0 and math.isfinite(q)) for q in vals):
            raise ValueError(f"qps: need positive target QPS values, got {list(qps)}")
        return "qps", vals
    if concurrencies is not None:
        cs = sorted({int(c) for c in concurrencies})
        if not cs or cs[0] < 1:
            raise ValueError(f"concurrency: need integers >= 1, got {list(concurrencies)}")
        return "concurrency", cs
    if c_min is None or c_max is None:
        raise ValueError("c_min/c_max: both are needed")
    return "concurrency", select_sweep_points(int(c_min), int(c_max), int(n_points))


def _es_estimator(arr: np.ndarray, p: float) -> float | None:
    """LoadGen's latency early-stopping estimate of percentile ``p`` (None below the floor)."""
    r = latency_early_stopping(ExactStats(np.asarray(arr, dtype=np.int64)), p)
    return float(r.estimate_ns) if r.met and r.estimate_ns is not None else None


def _pct_ms(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    pv = np.percentile(values, list(_PCTS), method="lower")
    return {f"p{p:g}": float(v) / 1e6 for p, v in zip(_PCTS, pv, strict=True)}


def point_metrics(
    records: dict[str, np.ndarray],
    *,
    concurrency: int | None,
    qps_target: float | None,
    warmup_ns: int = 0,
    warmup_queries: int = 0,
    run_config: dict[str, Any] | None = None,
    slo_ns: dict[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Point metrics and ``result_summary.json`` from one run's merged records (see module doc).

    Args:
        records: columns ``intended_ns, first_token_ns, completed_ns, n_tokens, error`` (all
            shards concatenated), times relative to the run start; optional ``n_input`` (input
            tokens, 0 = unknown) and ``finish_reason`` (names, "" = none) fill the summary's
            input lengths and finish-reason counts.
        warmup_ns / warmup_queries: queries issued before ``warmup_ns`` or among the first
            ``warmup_queries`` issues are dropped.
        slo_ns: goodput SLOs (``ttft`` / ``tpot`` / ``e2el`` in ns): ``metrics["goodput"]`` counts
            the kept requests meeting all of them (:func:`raybench.core.tokens.meets_slo`) and
            their rates over the kept window.

    Returns:
        ``(metrics, result_summary)``.
    """
    intended = np.asarray(records["intended_ns"], dtype=np.int64)
    order = np.argsort(intended, kind="stable")
    keep = intended >= warmup_ns
    if warmup_queries:
        keep[order[: int(warmup_queries)]] = False
    n_warm = int((~keep).sum())
    done = np.asarray(records["completed_ns"], dtype=np.int64)[keep]
    err = np.asarray(records["error"])[keep] > 0
    ok = (done > 0) & ~err
    issue = intended[keep][ok]
    comp = done[ok]
    first = np.asarray(records["first_token_ns"], dtype=np.int64)[keep][ok]
    tokens = np.asarray(records["n_tokens"], dtype=np.int64)[keep][ok]
    latency = comp - issue
    has_ft = first > 0
    ttft = (first - issue)[has_ft]
    tpot = tpot_ns(latency[has_ft], ttft, tokens[has_ft])
    n_ok = int(ok.sum())
    start = int(intended[keep].min()) if keep.any() else 0
    elapsed_ns = int(comp.max()) - start if n_ok else 0
    total_tokens = int(tokens.sum())
    tpot_p90 = float(np.percentile(tpot, 90, method="lower")) / 1e6 if tpot.size else None
    ttft_p90 = float(np.percentile(ttft, 90, method="lower")) / 1e6 if ttft.size else None
    metrics = {
        "n_completed": n_ok,
        "n_failed": int(keep.sum()) - n_ok,
        "n_warmup": n_warm,
        "output_tokens": total_tokens,
        "elapsed_s": elapsed_ns / 1e9,
        "system_tps": total_tokens / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0,
        "tps_per_user": 1000.0 / tpot_p90 if tpot_p90 else None,
        "tpot_p90_ms": tpot_p90,
        "ttft_p90_ms": ttft_p90,
        "qps": n_ok / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0,
        "latency_ms": _pct_ms(latency),
        "ttft_ms": _pct_ms(ttft),
        "tpot_ms": _pct_ms(tpot),
    }
    n_input = np.asarray(records.get("n_input", np.zeros(intended.shape[0])), dtype=np.int64)[keep][ok]
    finish = np.asarray(records.get("finish_reason", np.full(intended.shape[0], "")))[keep][ok]
    names, counts = np.unique(finish[finish != ""], return_counts=True)
    summary = build_result_summary(
        ttft_ns=ttft,
        tpot_ns=tpot,
        latency_ns=latency,
        output_tokens=tokens,
        input_tokens=n_input[n_input > 0],
        finish_reasons={str(k): int(c) for k, c in zip(names.tolist(), counts.tolist(), strict=True)},
        n_samples_issued=int(keep.sum()),
        n_samples_failed=int(keep.sum()) - n_ok,
        duration_ns=elapsed_ns or None,
        run_config=run_config,
        test_started_at=start,
        early_stopping=_es_estimator,
    )
    if slo_ns:
        met = meets_slo(latency, np.where(first > 0, first - issue, -1), tokens, slo_ns)
        met_tokens = int(tokens[met].sum())
        el = elapsed_ns / 1e9
        metrics["goodput"] = {
            "slo_ms": {k: v / 1e6 for k, v in slo_ns.items()}, "requests_met": int(met.sum()),
            "output_tokens_met": met_tokens, "fraction_met": float(met.mean()) if met.size else 0.0,
            "requests_per_second": int(met.sum()) / el if el > 0 else 0.0,
            "output_tokens_per_second": met_tokens / el if el > 0 else 0.0,
        }
    metrics["early_stopping_ms"] = {
        name: {k: (v / 1e6 if v is not None else None) for k, v in summary[name].get("early_stopping_percentiles", {}).items()}
        for name in ("ttft", "tpot", "latency")
    }
    return metrics, summary


def _merged_records(run_dir: Path) -> dict[str, np.ndarray]:
    cols = ("intended_ns", "first_token_ns", "completed_ns", "n_tokens", "error", "n_input", "finish_reason")
    with np.load(run_dir / "records.npz", allow_pickle=False) as z:
        parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
        for shard in sorted({k.partition("/")[0] for k in z.files}):
            n = z[f"{shard}/intended_ns"].shape[0]
            for col in cols[:-1]:
                key = f"{shard}/{col}"
                parts[col].append(z[key] if key in z.files else np.zeros(n, np.int64))
            # Finish codes are per shard: turned into names before the shards are concatenated.
            names = np.array(["", *z[f"{shard}/finish_reasons"].tolist()]) if f"{shard}/finish_reasons" in z.files \
                else np.array([""])
            codes = z[f"{shard}/finish"] if f"{shard}/finish" in z.files else np.zeros(n, np.int64)
            parts["finish_reason"].append(names[np.clip(codes, 0, len(names) - 1)])
    return {c: (np.concatenate(v) if v else np.zeros(0, np.int64)) for c, v in parts.items()}


def run_sweep(
    sweep_dir: str | Path,
    overrides: Sequence[str],
    *,
    mode: str,
    values: Sequence[int] | Sequence[float],
    config_path: str | Path | None = None,
    warmup_s: float = 0.0,
    warmup_queries: int = 0,
    executor_factory: Callable[[RunConfig], Executor] | None = None,
    on_point: Callable[[PointResult], None] | None = None,
) -> SweepResult:
    """Run one benchmark per sweep value and write the sweep files.

    Args:
        sweep_dir: where the point run directories, JSON and PNGs go.
        overrides: ``--set`` style overrides shared by every point (workload, sut, settings...).
        mode: ``"concurrency"``, ``"qps"`` or ``"rate"`` (see :func:`sweep_values`).
        values: concurrencies, target QPS values or rates.
        warmup_s / warmup_queries: warm-up excluded from each point (see the module docstring).
        executor_factory: builds the executor for a point's config (default: in-process).
        on_point: called after each point (progress output).

    Raises:
        ValueError / ConfigError: bad mode, values or config (before any run starts).
    """
    if mode not in ("concurrency", "qps", "rate"):
        raise ValueError(f"mode: expected 'concurrency', 'qps' or 'rate', got {mode!r}")
    if warmup_s < 0 or warmup_queries < 0:
        raise ValueError("warmup_s / warmup_queries: must be >= 0")
    out = Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = []
    for v in values:
        tag = f"c{int(v):05d}" if mode == "concurrency" else f"{mode}{float(v):g}"
        point = (
            ["scenario=Concurrency", f"settings.target_concurrency={int(v)}"]
            if mode == "concurrency"
            else ["scenario=Server", f"settings.server_target_qps={float(v)!r}"]
        )
        # A point's metrics (warm-up cut, Endpoints' summary) are computed from its records.
        cfg = load_run_config(config_path, ["records=all", *overrides, *point, f"run_dir={out / tag}"])
        configs.append((v, cfg))
    points: list[PointResult] = []
    for v, cfg in configs:
        if warmup_s > 0:
            cfg = _extend_min_duration(cfg, warmup_s)
        executor = executor_factory(cfg) if executor_factory else None
        try:
            outcome: RunOutcome = run_benchmark(cfg, executor)
        finally:
            close = getattr(executor, "close", None)
            if callable(close):
                close()
        conc = int(v) if mode == "concurrency" else None
        qps_t = float(v) if mode != "concurrency" else None
        arrival = getattr(cfg.scenario, "arrival", None)
        shape = arrival.model_dump(mode="json") if arrival is not None else {"kind": "poisson"}
        run_cfg = {
            "scenario": cfg.scenario.name,
            "load_pattern": {"type": "concurrency", "target_concurrency": conc} if conc
            else {"type": shape.pop("kind"), "target_qps": qps_t, **shape},
            "warmup": {"seconds": warmup_s, "queries": warmup_queries},
            "workload": cfg.workload.name,
            "sut": cfg.sut.name if cfg.sut else None,
        }
        m, summary = point_metrics(
            _merged_records(outcome.run_dir),
            concurrency=conc,
            qps_target=qps_t,
            warmup_ns=int(warmup_s * 1e9),
            warmup_queries=warmup_queries,
            run_config=run_cfg,
            slo_ns=cfg.slo.to_ns() if cfg.slo is not None else None,
        )
        atomic_write_json(outcome.run_dir / "result_summary.json", to_jsonable(summary))
        pr = PointResult(
            concurrency=conc,
            qps_target=qps_t,
            run_dir=str(outcome.run_dir),
            validity=outcome.metrics.validity,
            invalid_reasons=list(outcome.metrics.invalid_reasons),
            **m,
        )
        points.append(pr)
        if on_point:
            on_point(pr)
    return _finish(out, mode, points)


def _extend_min_duration(cfg: RunConfig, warmup_s: float) -> RunConfig:
    """The point's run lasts ``warmup_s`` longer, so the kept window still meets min duration."""
    from raybench.run import resolve_run_settings

    base = resolve_run_settings(cfg)[0].min_duration_ms
    return cfg.model_copy(update={"settings": {**cfg.settings, "min_duration_ms": int(base + warmup_s * 1000)}})


def _finish(out: Path, mode: str, points: list[PointResult]) -> SweepResult:
    x_key = "concurrency" if mode == "concurrency" else "qps_target"  # rate points are qps_target rows
    pareto = [
        ParetoPoint(i, p.system_tps, p.tps_per_user, p.ttft_p90_ms if p.ttft_p90_ms is not None else float("nan"))
        for i, p in enumerate(points)
        if p.tps_per_user
    ]
    front = [getattr(points[fp.concurrency], x_key) for fp in pareto_frontier(pareto)]
    rows = []
    for p in points:
        row = asdict(p)
        row["qps_target"] = p.qps_target
        row["on_frontier"] = getattr(p, x_key) in front
        rows.append(row)
    summary: dict[str, Any] = {
        "mode": mode,
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "points": rows,
        "frontier": front,
    }
    if mode == "concurrency" and len(points) > 0:
        cs = [p.concurrency for p in points if p.concurrency is not None]
        summary["endpoints_rule_problems"] = validate_sweep_points(cs, max(cs)) if max(cs) > 32 else [
            "c_max must be > 32 for an Endpoints Pareto submission"
        ]
    atomic_write_json(out / "sweep_summary.json", to_jsonable(summary))
    files = [out / "sweep_summary.json"]
    try:
        files += plot_sweep(out, mode, points)
    except ImportError:  # matplotlib missing: the JSON is the result, charts are a convenience
        pass
    return SweepResult(out, mode, points, front, files)


def plot_sweep(out: Path, mode: str, points: Sequence[PointResult]) -> list[Path]:
    """Draw the Pareto step function and the per-point charts (matplotlib, Agg backend).

    Nothing is interpolated: the Pareto curve is :func:`step_function` (each measured value held
    until the next measured point), and the "vs concurrency" charts are drawn as post-steps
    through the measured points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[Path] = []
    x_name = mode
    xs = [float(p.concurrency if mode == "concurrency" else p.qps_target) for p in points]  # type: ignore[arg-type]

    pp = [ParetoPoint(i, p.system_tps, p.tps_per_user) for i, p in enumerate(points) if p.tps_per_user]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if pp:
        sx, sy = step_function(pp)
        ax.plot(sx, sy, color="C0", lw=2, label="Pareto step function (measured points only)")
        ax.scatter([q.tps_per_user for q in pp], [q.system_tps for q in pp], color="C1", zorder=3, label="runs")
        for q in pp:
            ax.annotate(f"{xs[q.concurrency]:g}", (q.tps_per_user, q.system_tps), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("TPS per user = 1000 / TPOT p90 (ms)")
    ax.set_ylabel("System TPS (output tokens/s)")
    ax.set_title(f"System TPS vs interactivity (labels: {x_name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files.append(_save(fig, out / "pareto.png"))
    plt.close(fig)

    charts = [
        ("tps", "System TPS (output tokens/s)", [p.system_tps for p in points]),
        ("ttft_p90", "TTFT p90 (ms)", [p.ttft_p90_ms for p in points]),
        ("interactivity", "TPS per user (1000 / TPOT p90 ms)", [p.tps_per_user for p in points]),
    ]
    for key, label, ys in charts:
        pairs = sorted((x, y) for x, y in zip(xs, ys, strict=True) if y is not None)
        fig, ax = plt.subplots(figsize=(6, 4))
        if pairs:
            ax.step([a for a, _ in pairs], [b for _, b in pairs], where="post", color="C0")
            ax.scatter([a for a, _ in pairs], [b for _, b in pairs], color="C1", zorder=3)
        if mode == "concurrency" and pairs and pairs[-1][0] / max(pairs[0][0], 1) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xlabel({"concurrency": "concurrency", "qps": "target QPS", "rate": "request rate (queries/s)"}[mode])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        files.append(_save(fig, out / f"{key}_vs_{x_name}.png"))
        plt.close(fig)
    return files


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path
