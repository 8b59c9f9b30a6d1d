"""The composition root: a run config becomes a plan, shards, a verdict and a run directory.

This is where the pure kernel (:mod:`raybench.core`) meets the registries (workloads, SUTs) and an
executor. :func:`prepare_run` resolves everything a run needs and creates its run directory
before anything starts; :func:`execute_run` hands each shard only its own :class:`ShardJob`
through the executor (:class:`~raybench.inprocess.InProcessExecutor` or
``raybench.ray.RayExecutor``); :func:`finish_run` merges the shard reports, judges the run and
writes the run directory (:mod:`raybench.results`).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from raybench.config import RunConfig
from raybench.core.conf import resolve_settings
from raybench.core.metrics import RunMetrics
from raybench.core.plan import Plan, ShardSlice, build_plan, partition
from raybench.core.protocols import SampleLibrary, SUTContext
from raybench.core.records import ShardReport
from raybench.core.settings import TestSettings
from raybench.core.spec import AccuracyResult, SUTSpec, WorkloadSpec

__all__ = [
    "Executor",
    "PreparedRun",
    "ProgressFn",
    "RunOutcome",
    "ShardJob",
    "audit_config_path",
    "execute_run",
    "finish_run",
    "prepare_run",
    "resolve_run_settings",
    "run_benchmark",
]

ProgressFn = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class ShardJob:
    """Everything one shard needs, and nothing more: its slice of the plan, not the plan.

    Attributes:
        slice: the queries this shard issues.
        workload / workload_params: to build the sample library in the shard's process.
        sut / sut_params: to build the SUT (inline) in the shard's process.
        ctx: what the SUT is told about the run.
        query_timeout_s: per-query timeout.
        deadline_s: hard end of the run counted from T0 (``None``: per-query timeouts only).
        records: ``none``, ``shard`` or ``all`` (see ``RunConfig.records``).
        records_path: with ``records: shard``, the file this shard writes.
    """

    slice: ShardSlice
    workload: WorkloadSpec
    workload_params: dict[str, Any]
    sut: SUTSpec
    sut_params: dict[str, Any]
    ctx: SUTContext
    query_timeout_s: float
    deadline_s: float | None
    records: str = "none"
    records_path: str | None = None

    def runner_options(self) -> dict[str, Any]:
        """The :class:`~raybench.core.loadgen.ShardRunner` keyword arguments this job implies."""
        return {"ctx": self.ctx, "query_timeout_s": self.query_timeout_s, "deadline_s": self.deadline_s,
                "keep_records": self.records == "all", "records_path": self.records_path}


@dataclass
class PreparedRun:
    """A run ready to execute: resolved specs, parameters, settings, the plan and the run directory.

    ``library`` is the driver's sample library (built once; used for the QSL sizes, a fixed issue
    order, in-process shards and accuracy scoring). It never travels to a shard.
    """

    config: RunConfig
    workload: WorkloadSpec
    sut: SUTSpec
    workload_params: dict[str, Any]
    sut_params: dict[str, Any]
    settings: TestSettings
    plan: Plan
    library: SampleLibrary
    run_dir: Path
    qsl_name: str
    query_timeout_s: float = 600.0
    warnings: list[str] = field(default_factory=list)

    @property
    def total_count(self) -> int:
        return self.plan.total_count

    @property
    def performance_count(self) -> int:
        return int(self.library.performance_count)

    @property
    def deadline_s(self) -> float | None:
        """The hard end of the run counted from T0 (the scenario's rule)."""
        return self.plan.scenario.deadline_s(self.plan, self.query_timeout_s, self.config.deadline_grace_s)

    def sut_context(self, shard: int) -> SUTContext:
        eff = self.plan.effective
        return SUTContext(workload=self.workload.name, scenario=eff.scenario, mode=eff.mode,
                          workload_params=dict(self.workload_params), shard=shard)

    def shard_count(self, requested: int) -> int:
        """The shards this run uses when ``requested`` are asked for (serial scenarios: 1)."""
        return self.plan.scenario.shard_count(requested)

    def jobs(self, shards: int) -> list[ShardJob]:
        """One :class:`ShardJob` per shard (the plan partitioned by its scenario)."""
        mode = self.config.records
        return [
            ShardJob(sl, self.workload, dict(self.workload_params), self.sut, dict(self.sut_params),
                     self.sut_context(sl.shard), self.query_timeout_s, self.deadline_s, mode,
                     str((self.run_dir / f"records-shard{sl.shard}.npz").resolve()) if mode == "shard" else None)
            for sl in partition(self.plan, shards)
        ]


class Executor(Protocol):
    """Runs shard jobs and returns their reports (``InProcessExecutor`` or ``RayExecutor``)."""

    def run(self, prepared: PreparedRun, jobs: list[ShardJob], progress: ProgressFn | None = None) -> list[ShardReport]: ...

    def default_shards(self, prepared: PreparedRun) -> int: ...


@dataclass
class RunOutcome:
    """What a finished run produced."""

    run_dir: Path
    metrics: RunMetrics
    result: dict[str, Any]
    accuracy: AccuracyResult | None = None
    accuracy_error: str | None = None


def make_run_dir(cfg: RunConfig, create: bool = True) -> Path:
    """The run directory (``out/<utc>-<workload>-<scenario>``, or ``run_dir``), checked writable.

    With ``create=False`` only the directory that will hold it is created and probed (so that a
    bad ``--out`` fails before anything is built); the run directory itself is made afterwards.

    Raises:
        ValueError: one line naming ``out``/``run_dir`` when it cannot be created or written.
    """
    if cfg.run_dir:
        path, field_name = Path(cfg.run_dir), "run_dir"
    else:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4]
        path, field_name = Path(cfg.out) / f"{stamp}-{cfg.workload.name}-{cfg.scenario.name}", "out"
    where = path if create else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".raybench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{field_name}: cannot create or write {where}: {exc.strerror or type(exc).__name__}") from None
    return path


def audit_config_path(config: RunConfig) -> Path | None:
    """The compliance ``audit.config`` this run applies: ``config.audit_config``, else (as LoadGen)
    ``audit.config`` in the working directory if there is one; ``none`` turns the lookup off.

    Raises:
        ValueError: one line naming ``audit_config`` when the file named there is not a file.
    """
    from raybench.core.conf import AUDIT_CONFIG_NAME

    name = config.audit_config
    if name is not None and name.lower() == "none":
        return None
    if name is None:
        found = Path.cwd() / AUDIT_CONFIG_NAME
        return found if found.is_file() else None
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"audit_config: {path} is not a file")
    return path


def resolve_run_settings(config: RunConfig) -> tuple[TestSettings, list[str]]:
    """The run's TestSettings: defaults < mlperf.conf < user.conf (else the workload's demo settings)
    < ``settings`` < the scenario block < the compliance audit.config (:func:`audit_config_path`);
    plus the conf warnings."""
    from raybench.registry import get_workload

    wl = get_workload(config.workload.name)
    overrides: dict[str, Any] = {}
    if not config.user_conf:
        overrides.update(wl.settings.get(config.scenario.name, {}))
    if wl.token_latencies:
        overrides.setdefault("use_token_latencies", True)
    overrides.update(config.settings)
    overrides.update(config.scenario.settings_overrides())
    settings, warnings = resolve_settings(model=config.model or wl.mlperf_model, scenario=config.scenario.name,
                                          mode=config.mode, mlperf_conf=config.mlperf_conf, user_conf=config.user_conf,
                                          overrides=overrides, round=config.round)
    audit = audit_config_path(config)
    if audit is not None:
        from raybench.core.conf import apply_audit_config

        warnings = [*warnings, *apply_audit_config(settings, audit, config.scenario.name)]
    return settings, warnings


def prepare_run(config: RunConfig) -> PreparedRun:
    """Resolve the workload, SUT, settings and plan, and check the run directory can be written.

    The run directory itself is created when the first file of the run is written, so a run
    stopped before it measured anything leaves nothing behind.

    Nothing is loaded onto an accelerator here; the sample library is built once (its sizes
    shape the plan).
    """
    from raybench.registry import get_sut, get_workload, make_library, sut_params, workload_params

    wl = get_workload(config.workload.name)
    sut = get_sut(config.sut.name if config.sut and config.sut.name else wl.default_sut)
    run_dir = make_run_dir(config, create=False)  # a bad --out fails now, not after the run
    scenario = config.scenario
    if scenario.name not in wl.scenarios:
        raise ValueError(f"scenario: {scenario.name} is not supported by workload {wl.name} "
                         f"(supported: {', '.join(wl.scenarios)})")
    wparams = workload_params(wl, config.workload.params)
    sparams = sut_params(sut, wl, config.sut.params if config.sut else None)
    settings, warnings = resolve_run_settings(config)
    library = make_library(wl, wparams)
    _check_plan_size(config, settings, int(library.total_count), int(library.performance_count))
    order = getattr(library, "issue_order", None)
    arrivals = getattr(library, "arrival_ns", None)
    plan = build_plan(scenario, settings, int(library.total_count), int(library.performance_count),
                      issue_order=order() if callable(order) else order,
                      arrival_ns=arrivals() if callable(arrivals) else arrivals)
    if "arrival" in plan.meta:  # a load shape other than MLPerf's Poisson
        warnings = [*warnings, f"scenario.arrival: {plan.meta['arrival']['kind']} arrivals are not MLPerf's "
                               "Poisson Server schedule; this run is not MLPerf-compliant"]
    audit = audit_config_path(config)
    if audit is not None:  # the detail log says so, as LoadGen does
        plan.meta["audit_config"] = str(audit)
    if config.slo is not None:  # counted exactly by every shard (ShardSlice.slo)
        plan.meta["slo_ns"] = config.slo.to_ns()
    return PreparedRun(
        config=config, workload=wl, sut=sut, workload_params=wparams, sut_params=sparams, settings=settings,
        plan=plan, library=library, run_dir=run_dir, qsl_name=getattr(library, "name", wl.name),
        query_timeout_s=float(config.query_timeout_s if config.query_timeout_s is not None
                              else wl.query_timeout_s or 600.0), warnings=list(warnings),
    )


def _check_plan_size(config: RunConfig, settings: TestSettings, total: int, perf: int) -> None:
    """Refuse, before building it, a plan that would not fit in memory or would run for days.

    Raises:
        ValueError: one line naming the setting that made the plan too big or too long.
    """
    sc = config.scenario
    samples, seconds = sc.plan_size(sc.effective(settings, total, perf))
    field_name = sc.rate_setting()
    if samples > config.max_plan_queries:
        raise ValueError(f"settings.{field_name}: the plan would hold about {samples:.3g} samples (limit "
                         f"max_plan_queries={config.max_plan_queries}); lower it or min_duration, or raise "
                         "max_plan_queries")
    if seconds > config.max_planned_duration_s:
        raise ValueError(f"settings.{field_name}: the plan would take about {seconds:.3g} s to issue (limit "
                         f"max_planned_duration_s={config.max_planned_duration_s:g}); raise the rate, lower "
                         "min_query_count, or raise max_planned_duration_s")


def execute_run(prepared: PreparedRun, executor: Executor | None = None,
                progress: ProgressFn | None = None) -> RunOutcome:
    """Run a prepared benchmark on an executor and write its run directory."""
    from raybench.inprocess import InProcessExecutor

    executor = executor or InProcessExecutor()
    shards = prepared.shard_count(prepared.config.shards or executor.default_shards(prepared))
    started = _dt.datetime.now(_dt.UTC)
    scraper, progress = _start_telemetry(prepared, progress)
    try:
        reports = executor.run(prepared, prepared.jobs(shards), progress)
    finally:
        if scraper is not None:
            scraper.stop()
    extra = getattr(executor, "system_extra", None)
    result_extra = getattr(executor, "result_extra", None)
    res_extra = result_extra() if callable(result_extra) else None
    if scraper is not None:
        res_extra = {**(res_extra or {}), "telemetry": _write_telemetry(prepared, executor, reports, scraper)}
    return finish_run(prepared, reports, started=started, shards=shards,
                      system_extra=extra() if callable(extra) else None, result_extra=res_extra)


def _start_telemetry(prepared: PreparedRun, progress: ProgressFn | None) -> tuple[Any, ProgressFn | None]:
    """Start scraping the server's metrics (``raybench.telemetry``) if the SUT's params ask for it.

    Returns the scraper (or ``None``) and the progress callback to use: it also tells the scraper
    the run's deadline once the first snapshot reveals T0.
    """
    from raybench.telemetry import Scraper, targets

    urls, interval = targets(prepared.sut_params)
    if not urls:
        return None, progress
    p = prepared.sut_params
    scraper = Scraper(urls, interval, proxy=p.get("proxy", "env"), ca_bundle=p.get("ca_bundle"),
                      verify_tls=bool(p.get("verify_tls", True)))
    scraper.start()
    deadline_s = prepared.deadline_s
    if deadline_s is None:
        return scraper, progress

    told: list[bool] = []

    def tap(shard: int, snap: dict[str, Any]) -> None:
        if not told and "t_ns" in snap:
            import time

            told.append(True)
            scraper.set_deadline(time.monotonic_ns() - int(snap["t_ns"]) + int((deadline_s + interval) * 1e9))
        if progress is not None:
            progress(shard, snap)

    return scraper, tap


def _write_telemetry(prepared: PreparedRun, executor: Executor, reports: list[ShardReport], scraper: Any) -> dict[str, Any]:
    """``telemetry.jsonl`` in the run directory, aligned to T0; the summary for result.json."""
    from raybench.core.clock import MonotonicClock
    from raybench.telemetry import write_telemetry

    t0_wall = next((r.t0_wall_ns for r in reports if r.t0_wall_ns), 0)
    clock = getattr(executor, "clock", None)
    t0_mono = next((r.start_ns for r in reports if r.start_ns), 0) if (
        not t0_wall and (clock is None or isinstance(clock, MonotonicClock))) else 0
    prepared.run_dir.mkdir(parents=True, exist_ok=True)
    return write_telemetry(prepared.run_dir, scraper, t0_wall_ns=t0_wall, t0_mono_ns=t0_mono)


def run_benchmark(config: RunConfig, executor: Executor | None = None, progress: ProgressFn | None = None) -> RunOutcome:
    """Run one benchmark and write its run directory."""
    return execute_run(prepare_run(config), executor, progress)


def finish_run(prepared: PreparedRun, reports: list[ShardReport], *, started: _dt.datetime, shards: int,
               system_extra: dict[str, Any] | None = None, result_extra: dict[str, Any] | None = None) -> RunOutcome:
    """Merge the reports, compute metrics and write the run directory (each file atomically)."""
    from raybench.results import write_run_dir

    return write_run_dir(prepared, reports, started=started, shards=shards, system_extra=system_extra,
                         result_extra=result_extra)
