"""One benchmark run end to end: config -> plan -> executor -> metrics -> run directory.

The executor is the only part that differs between a laptop and a cluster:
:class:`InProcessExecutor` runs the shards as asyncio tasks in this process (it still pickles
every slice and report it passes, so serialization bugs show up in unit tests), and
``raybench.ray.RayExecutor`` runs them as Ray actors. Both return plain
:class:`~raybench.core.records.ShardReport` objects that :func:`finish_run` merges.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import pickle
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from raybench import __version__
from raybench.core.clock import MonotonicClock, VirtualClock
from raybench.core.config import RunConfig
from raybench.core.loadgen import ShardRunner
from raybench.core.logs.accuracy_log import write_accuracy_log
from raybench.core.logs.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, to_jsonable
from raybench.core.logs.mlperf import detail_lines, summary_lines
from raybench.core.metrics import Limits, RunMetrics, compute_metrics
from raybench.core.plan import Plan, ShardSlice, build_plan, partition
from raybench.core.protocols import SUTContext
from raybench.core.records import ShardReport
from raybench.core.settings import TestSettings, resolve_settings
from raybench.core.spec import AccuracyResult, SUTSpec, WorkloadSpec, load_object

__all__ = [
    "Executor",
    "InProcessExecutor",
    "PreparedRun",
    "RunOutcome",
    "finish_run",
    "prepare_run",
    "run_benchmark",
    "shard_deadline_s",
]

ProgressFn = Callable[[int, dict[str, Any]], None]


@dataclass
class PreparedRun:
    """A run ready to execute: resolved specs, parameters, settings and the global plan."""

    config: RunConfig
    workload: WorkloadSpec
    sut: SUTSpec
    workload_params: dict[str, Any]
    sut_params: dict[str, Any]
    settings: TestSettings
    plan: Plan
    total_count: int
    performance_count: int
    qsl_name: str
    query_timeout_s: float = 600.0
    warnings: list[str] = field(default_factory=list)

    def sut_context(self, shard: int) -> SUTContext:
        return SUTContext(
            workload=self.workload.name,
            scenario=self.plan.effective.scenario,
            mode=self.plan.effective.mode,
            workload_params=dict(self.workload_params),
            shard=shard,
        )


class Executor(Protocol):
    """Runs shard slices and returns their reports (``InProcessExecutor`` or ``RayExecutor``)."""

    def run(self, prepared: PreparedRun, slices: list[ShardSlice], progress: ProgressFn | None = None) -> list[ShardReport]: ...

    def default_shards(self, prepared: PreparedRun) -> int: ...


def prepare_run(config: RunConfig) -> PreparedRun:
    """Resolve the workload, SUT, settings and plan of a run (no model is loaded here)."""
    from raybench.registry import get_sut, get_workload, make_library, sut_params, workload_params

    wl = get_workload(config.workload.name)
    sut = get_sut(config.sut.name if config.sut and config.sut.name else wl.default_sut)
    if config.scenario not in wl.scenarios:
        raise ValueError(f"scenario: {config.scenario} is not supported by workload {wl.name} (supported: {', '.join(wl.scenarios)})")
    wparams = workload_params(wl, config.workload.params)
    sparams = sut_params(sut, wl, config.sut.params if config.sut else None)
    overrides: dict[str, Any] = {}
    if not config.user_conf:
        overrides.update(wl.settings.get(config.scenario, {}))
    if wl.token_latencies:
        overrides.setdefault("use_token_latencies", True)
    overrides.update(config.settings)
    mlperf_conf: str | None = config.mlperf_conf
    settings, warnings = resolve_settings(
        model=config.model or wl.mlperf_model,
        scenario=config.scenario,
        mode=config.mode,
        mlperf_conf=mlperf_conf,
        user_conf=config.user_conf,
        overrides=overrides,
        round=config.round,
    )
    library = make_library(wl, wparams)
    total, perf = int(library.total_count), int(library.performance_count)
    plan = build_plan(settings, total, perf)
    return PreparedRun(
        config=config,
        workload=wl,
        sut=sut,
        workload_params=wparams,
        sut_params=sparams,
        settings=settings,
        plan=plan,
        total_count=total,
        performance_count=perf,
        qsl_name=getattr(library, "name", wl.name),
        query_timeout_s=float(config.query_timeout_s or wl.query_timeout_s or 600.0),
        warnings=list(warnings),
    )


def shard_deadline_s(prepared: PreparedRun) -> float | None:
    """The hard end of a run, counted from T0.

    With ``max_duration`` set: max duration + grace. Otherwise, for scheduled scenarios, the
    last scheduled send + the query timeout + grace; serial scenarios are bounded by the
    per-query timeout instead.
    """
    cfg = prepared.config
    eff = prepared.plan.effective
    if eff.max_duration_ms:
        return eff.max_duration_ms / 1000.0 + cfg.deadline_grace_s
    if eff.scenario == "Server" and prepared.plan.phases and not prepared.plan.accuracy_log_all:
        last = max(int(p.intended_ns[-1]) for p in prepared.plan.phases if p.query_count)
        return last / 1e9 + prepared.query_timeout_s + cfg.deadline_grace_s
    return None


class InProcessExecutor:
    """Runs every shard as an asyncio task in this process (tests, single-node debugging).

    Args:
        clock: ``None`` for the real monotonic clock, or a :class:`VirtualClock` to run the whole
            benchmark on virtual time.
        shards: default shard count.
    """

    def __init__(self, clock: VirtualClock | None = None, shards: int = 1) -> None:
        self.clock = clock
        self.shards = shards

    def default_shards(self, prepared: PreparedRun) -> int:
        return self.shards

    def run(self, prepared: PreparedRun, slices: list[ShardSlice], progress: ProgressFn | None = None) -> list[ShardReport]:
        from raybench.registry import make_library, make_sut

        # Pickle what crosses the executor boundary, as a real cluster would.
        slices = pickle.loads(pickle.dumps(slices))
        clock = self.clock or MonotonicClock()
        deadline = shard_deadline_s(prepared)

        async def main() -> list[ShardReport]:
            runners = []
            for sl in slices:
                lib = make_library(prepared.workload, dict(prepared.workload_params))
                sut = make_sut(prepared.sut, dict(prepared.sut_params))
                cb = (lambda snap, k=sl.shard: progress(k, snap)) if progress else None
                runners.append(
                    ShardRunner(
                        sl,
                        sut,
                        lib,
                        clock,
                        ctx=prepared.sut_context(sl.shard),
                        query_timeout_s=prepared.query_timeout_s,
                        deadline_s=deadline,
                        on_snapshot=cb,
                    )
                )
            loop = asyncio.get_running_loop()
            _install_interrupt(loop, runners)
            try:
                await asyncio.gather(*(r.prepare() for r in runners))
                t0 = clock.now_ns() + 20_000_000
                return list(await asyncio.gather(*(r.run(t0) for r in runners)))
            finally:
                await asyncio.gather(*(r.close() for r in runners), return_exceptions=True)
                _remove_interrupt(loop)

        if isinstance(clock, VirtualClock):
            reports = clock.run(main())
        else:
            reports = asyncio.run(main())
        return pickle.loads(pickle.dumps(reports))


def _install_interrupt(loop: asyncio.AbstractEventLoop, runners: list[ShardRunner]) -> None:
    """Ctrl-C stops issuing, cancels what is in flight and lets the run write what it has."""
    try:
        loop.add_signal_handler(signal.SIGINT, lambda: [r.abort("interrupted by the user (Ctrl-C)") for r in runners])
    except (NotImplementedError, RuntimeError, ValueError):
        pass


def _remove_interrupt(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.remove_signal_handler(signal.SIGINT)
    except (NotImplementedError, RuntimeError, ValueError):
        pass


@dataclass
class RunOutcome:
    """What a finished run produced."""

    run_dir: Path
    metrics: RunMetrics
    result: dict[str, Any]
    accuracy: AccuracyResult | None = None
    accuracy_error: str | None = None


def _run_dir(cfg: RunConfig, scenario: str) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4]
    return Path(cfg.out) / f"{stamp}-{cfg.workload.name}-{scenario}"


def system_info(prepared: PreparedRun, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's system description: MLPerf's system-description fields plus the SUT's config.

    Host facts (``raybench.report.system.describe_host``: /proc/cpuinfo, memory, ``nvidia-smi``
    when present) describe the driver's host; the Ray executor's ``extra`` adds ``nodes`` and
    overrides the per-node fields with those of the SUT nodes. Software versions come from
    package metadata, so nothing heavy (torch) is imported to learn its version. ``tags.system_name``
    names the system (MLPerf's ``system_name``); secrets in SUT/workload params are masked.
    """
    from raybench.report.system import describe_host, software_versions

    host = describe_host()
    versions = software_versions()
    versions.setdefault("raybench", __version__)
    versions.setdefault("numpy", np.__version__)
    framework = ", ".join(f"{k} {versions[k]}" for k in ("vllm", "torch", "transformers", "diffusers", "ultralytics") if k in versions)
    info: dict[str, Any] = {
        "system_name": prepared.config.tags.get("system_name") or host["hostname"],
        "system_type": prepared.config.tags.get("system_type", "datacenter"),
        "number_of_nodes": 1,
        **{k: v for k, v in host.items() if k != "hostname"},
        "framework": framework or "raybench (no ML framework installed)",
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in versions.items()) + f", python {sys.version.split()[0]}",
        "software": versions,
        "python": sys.version.split()[0],
        "raybench": __version__,
        "numpy": np.__version__,
        "driver_host": host["hostname"],
        "sut": {"name": prepared.sut.name, "params": _mask_secrets(prepared.sut_params)},
        "workload": {"name": prepared.workload.name, "params": _mask_secrets(prepared.workload_params)},
    }
    if extra:
        info.update(extra)
    return info


# Whole words of a parameter name that mark a secret ("api_key", "auth_token"), not "max_tokens".
_SECRET_RE = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?)($|_)")


def _mask_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """Hide values whose names look secret (an env var *name* such as ``api_key_env`` is kept)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        lk = k.lower()
        if _SECRET_RE.search(lk) and not lk.endswith("_env") and v:
            out[k] = "***"
        elif isinstance(v, dict):
            out[k] = _mask_secrets(v)
        else:
            out[k] = v
    return out


def result_dict(prepared: PreparedRun, m: RunMetrics, shards: int, started: _dt.datetime) -> dict[str, Any]:
    """The content of ``result.json``."""
    s = prepared.settings
    from dataclasses import asdict

    return to_jsonable(
        {
            "raybench_version": __version__,
            "started_utc": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "workload": prepared.workload.name,
            "sut": prepared.sut.name,
            "scenario": m.scenario,
            "mode": m.mode,
            "validity": m.validity,
            "invalid_reasons": m.invalid_reasons,
            "queries_issued": m.queries_issued,
            "samples_issued": m.samples_issued,
            "samples_completed": m.samples_completed,
            "num_errors": m.num_errors,
            "errors": m.errors,
            "duration_ns": m.duration_ns,
            "samples_per_second": m.samples_per_second,
            "scheduled_samples_per_second": m.scheduled_samples_per_second,
            "tokens_per_second": m.tokens_per_second,
            "total_tokens": m.total_tokens,
            "latency_ns": m.latency,
            "query_latency_ns": m.query_latency,
            "ttft_ns": m.ttft,
            "tpot_ns": m.tpot,
            "itl_ns": m.itl,
            "early_stopping": m.early_stopping,
            "lateness_ns": m.lateness,
            "constraints": {
                "min_duration_met": m.min_duration_met,
                "min_queries_met": m.min_queries_met,
                "perf_constraints_met": m.perf_constraints_met,
                "early_stopping_met": m.early_stopping_met,
            },
            "overlatency_count": m.overlatency_count,
            "timing_s": {
                "final_query_scheduled": m.final_query_scheduled_s,
                "final_query_issued": m.final_query_issued_s,
                "final_query_all_samples_done": m.final_query_done_s,
                "max_latency": m.max_latency_s,
            },
            "settings": asdict(s),
            "effective": asdict(prepared.plan.effective),
            "shards": shards,
            "per_shard": m.shards,
            "percentile_method": "exact: sorted[int(n*p)] over all records (LoadGen); histograms.json: HDR, rel. error <= 0.05%",
            "warnings": prepared.warnings,
        }
    )


def finish_run(
    prepared: PreparedRun,
    reports: list[ShardReport],
    *,
    started: _dt.datetime,
    shards: int,
    system_extra: dict[str, Any] | None = None,
) -> RunOutcome:
    """Merge the reports, compute metrics and write the run directory (each file atomically)."""
    cfg = prepared.config
    plan = prepared.plan
    run_dir = _run_dir(cfg, plan.effective.scenario)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(plan, reports, Limits(cfg.max_error_rate, cfg.lateness_p99_ms))
    sut_name = reports[0].sut_name if reports and reports[0].sut_name else prepared.sut.name
    # Records and raw per-shard data first: whatever happens next, the measurements are on disk.
    _write_records(run_dir / "records.npz", reports)
    token_counts = None
    if prepared.settings.use_token_latencies:
        token_counts = {}
        for rep in reports:
            r = rep.records
            if r:
                token_counts.update(zip(r["seq_id"].tolist(), r["n_tokens"].tolist(), strict=True))
    acc_entries = [e for rep in reports for e in rep.accuracy]
    write_accuracy_log(run_dir / "mlperf_log_accuracy.json", acc_entries, token_counts)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_mask_config(cfg), sort_keys=False))
    result = result_dict(prepared, metrics, shards, started)
    atomic_write_json(run_dir / "result.json", result)
    atomic_write_json(run_dir / "histograms.json", _histograms_json(metrics))
    atomic_write_json(run_dir / "timeline.json", metrics.timeline)
    lines = detail_lines(
        plan,
        metrics,
        sut_name=sut_name,
        qsl_name=prepared.qsl_name,
        qsl_total_count=prepared.total_count,
        qsl_performance_count=prepared.performance_count,
        test_datetime=started,
        shards=shards,
    )
    atomic_write_text(run_dir / "mlperf_log_detail.txt", "\n".join(lines) + "\n")
    summ = summary_lines(plan, metrics, sut_name=sut_name, qsl_performance_count=prepared.performance_count)
    atomic_write_text(run_dir / "mlperf_log_summary.txt", "\n".join(summ) + "\n")
    atomic_write_json(run_dir / "system.json", system_info(prepared, system_extra))
    outcome = RunOutcome(run_dir=run_dir, metrics=metrics, result=result)
    if plan.accuracy_log_all and cfg.accuracy and prepared.workload.accuracy:
        try:
            outcome.accuracy = score_accuracy(prepared, acc_entries, run_dir)
        except Exception as exc:  # scoring failure must not lose the performance data
            outcome.accuracy_error = f"{type(exc).__name__}: {exc}"
        result["accuracy"] = (
            {"metrics": dict(outcome.accuracy.metrics), "passed": outcome.accuracy.passed, "targets": dict(outcome.accuracy.targets)}
            if outcome.accuracy
            else {"error": outcome.accuracy_error}
        )
        atomic_write_json(run_dir / "result.json", result)
    return outcome


def score_accuracy(prepared: PreparedRun, entries: list[tuple[int, int, bytes]], run_dir: Path) -> AccuracyResult:
    """Score an accuracy log with the workload's scorer and write ``accuracy.txt``."""
    from raybench.registry import make_library

    assert prepared.workload.accuracy is not None
    scorer = load_object(prepared.workload.accuracy)
    library = make_library(prepared.workload, dict(prepared.workload_params))
    res: AccuracyResult = scorer([(q, d) for _, q, d in entries], library, dict(prepared.workload_params))
    atomic_write_text(run_dir / "accuracy.txt", res.accuracy_txt if res.accuracy_txt.endswith("\n") else res.accuracy_txt + "\n")
    return res


def _mask_config(cfg: RunConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    if data.get("sut"):
        data["sut"]["params"] = _mask_secrets(data["sut"].get("params", {}))
    return data


def _write_records(path: Path, reports: list[ShardReport]) -> None:
    import io

    arrays: dict[str, np.ndarray] = {}
    for rep in reports:
        for k, v in (rep.records or {}).items():
            arrays[f"shard{rep.shard}/{k}"] = v
        arrays[f"shard{rep.shard}/errors"] = np.array(rep.errors, dtype=object).astype(str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _histograms_json(m: RunMetrics) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, h in m.histograms.items():
        d: dict[str, Any] = {"histogram": h.to_dict()}
        if h.count:
            d["percentiles_ns"] = {f"p{p * 100:g}": h.percentile(p) for p in (0.5, 0.9, 0.95, 0.97, 0.99, 0.999)}
        out[name] = d
    return out


def run_benchmark(
    config: RunConfig,
    executor: Executor | None = None,
    progress: ProgressFn | None = None,
) -> RunOutcome:
    """Run one benchmark and write its run directory."""
    prepared = prepare_run(config)
    executor = executor or InProcessExecutor()
    shards = config.shards or executor.default_shards(prepared)
    if prepared.plan.effective.scenario in ("SingleStream", "MultiStream"):
        shards = 1
    slices = partition(prepared.plan, shards)
    started = _dt.datetime.now(_dt.UTC)
    reports = executor.run(prepared, slices, progress)
    extra = getattr(executor, "system_extra", None)
    return finish_run(prepared, reports, started=started, shards=shards, system_extra=extra() if callable(extra) else None)

