"""The run directory: every file a finished run writes, and what goes into them.

Order matters: the raw measurements (records, accuracy log) are written first, so that whatever
fails afterwards (a scorer, a plot) the measurements are on disk. Every file is written
atomically (temp file + rename). Secrets in SUT or workload parameters are masked everywhere.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from raybench import __version__
from raybench.core.logs.accuracy_log import write_accuracy_log
from raybench.core.logs.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, to_jsonable
from raybench.core.logs.mlperf import detail_lines, summary_lines
from raybench.core.metrics import Limits, RunMetrics, compute_metrics
from raybench.core.records import ShardReport
from raybench.core.spec import AccuracyResult, load_object

if TYPE_CHECKING:
    from raybench.run import PreparedRun, RunOutcome

__all__ = ["mask_secrets", "result_dict", "score_accuracy", "system_info", "write_run_dir"]

PERCENTILE_METHOD = ("LoadGen's sorted[int(n*p)] read from merged HDR histograms: relative error <= 1/2048 "
                     "(0.049%); min, max, mean and every verdict are exact")


def write_run_dir(prepared: PreparedRun, reports: list[ShardReport], *, started: _dt.datetime, shards: int,
                  system_extra: dict[str, Any] | None = None, result_extra: dict[str, Any] | None = None) -> RunOutcome:
    """Judge the run and write every file of its run directory."""
    from raybench.run import RunOutcome

    cfg, plan, run_dir = prepared.config, prepared.plan, prepared.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(plan, reports, Limits(cfg.max_error_rate, cfg.lateness_p99_ms))
    sut_name = reports[0].sut_name if reports and reports[0].sut_name else prepared.sut.name
    if any(rep.records is not None for rep in reports):
        _write_records(run_dir / "records.npz", reports)
    acc_entries = [e for rep in reports for e in rep.accuracy]
    write_accuracy_log(run_dir / "mlperf_log_accuracy.json", acc_entries,
                       with_token_count=bool(prepared.settings.use_token_latencies))
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_masked_config(prepared), sort_keys=False))
    result = result_dict(prepared, metrics, shards, started)
    if result_extra:
        result.update(to_jsonable(result_extra))
    atomic_write_json(run_dir / "result.json", result)
    atomic_write_json(run_dir / "histograms.json", _histograms_json(metrics))
    atomic_write_json(run_dir / "timeline.json", metrics.timeline)
    lines = detail_lines(plan, metrics, sut_name=sut_name, qsl_name=prepared.qsl_name,
                         qsl_total_count=prepared.total_count, qsl_performance_count=prepared.performance_count,
                         test_datetime=started, shards=shards)
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
            {"metrics": dict(outcome.accuracy.metrics), "passed": outcome.accuracy.passed,
             "targets": dict(outcome.accuracy.targets)}
            if outcome.accuracy else {"error": outcome.accuracy_error}
        )
        atomic_write_json(run_dir / "result.json", result)
    return outcome


def score_accuracy(prepared: PreparedRun, entries: list[tuple[int, int, bytes, int]], run_dir: Path) -> AccuracyResult:
    """Score an accuracy log with the workload's scorer (on the driver's library) and write ``accuracy.txt``."""
    assert prepared.workload.accuracy is not None
    scorer = load_object(prepared.workload.accuracy)
    res: AccuracyResult = scorer([(e[1], e[2]) for e in entries], prepared.library, dict(prepared.workload_params))
    atomic_write_text(run_dir / "accuracy.txt", res.accuracy_txt if res.accuracy_txt.endswith("\n") else res.accuracy_txt + "\n")
    return res


def result_dict(prepared: PreparedRun, m: RunMetrics, shards: int, started: _dt.datetime) -> dict[str, Any]:
    """The content of ``result.json``."""
    return to_jsonable({
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
        "total_input_tokens": m.total_input_tokens,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "finish_reasons": m.finish_reasons,
        "goodput": m.goodput,
        "interactivity_tps_per_user": m.interactivity,
        "e2e_interactivity": m.e2e_interactivity,
        "conversations": m.conversations,
        "latency_ns": m.latency,
        "query_latency_ns": m.query_latency,
        "ttft_ns": m.ttft,
        "tpot_ns": m.tpot,
        "itl_ns": m.itl,
        "early_stopping": m.early_stopping,
        "lateness_ns": m.lateness,
        "loop_lag_ns": m.loop_lag,
        "overhead_ns": m.overhead,
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
        "settings": asdict(prepared.settings),
        "effective": asdict(prepared.plan.effective),
        "shards": shards,
        "per_shard": m.shards,
        "percentile_method": PERCENTILE_METHOD,
        "percentile_relative_error": m.percentile_relative_error,
        "records": prepared.config.records,
        "warnings": prepared.warnings,
        **({"load_shape": prepared.plan.meta["arrival"]} if "arrival" in prepared.plan.meta else {}),
    })


def system_info(prepared: PreparedRun, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's system description: MLPerf's system-description fields plus the SUT's config.

    Host facts (``raybench.report.system.describe_host``: /proc/cpuinfo, memory, ``nvidia-smi``
    when present) describe the driver's host; the Ray executor's ``extra`` adds ``nodes`` and
    overrides the per-node fields with those of the SUT nodes. Software versions come from
    package metadata, so nothing heavy (torch) is imported to learn its version.
    ``tags.system_name`` names the system (MLPerf's ``system_name``); secrets are masked.
    """
    from raybench.report.system import describe_host, software_versions

    host = describe_host()
    versions = software_versions()
    versions.setdefault("raybench", __version__)
    versions.setdefault("numpy", np.__version__)
    framework = ", ".join(f"{k} {versions[k]}" for k in ("vllm", "torch", "transformers", "diffusers", "ultralytics")
                          if k in versions)
    tags = prepared.config.tags
    info: dict[str, Any] = {
        "system_name": tags.get("system_name") or host["hostname"],
        "system_type": tags.get("system_type", "datacenter"),
        "number_of_nodes": 1,
        **{k: v for k, v in host.items() if k != "hostname"},
        "framework": framework or "raybench (no ML framework installed)",
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in versions.items()) + f", python {sys.version.split()[0]}",
        "software": versions,
        "python": sys.version.split()[0],
        "raybench": __version__,
        "numpy": np.__version__,
        "driver_host": host["hostname"],
        "sut": {"name": prepared.sut.name, "params": mask_secrets(prepared.sut_params)},
        "workload": {"name": prepared.workload.name, "params": mask_secrets(prepared.workload_params)},
    }
    if extra:
        info.update(extra)
    return info


# Whole words of a parameter name that mark a secret ("api_key", "auth_token"), not "max_tokens".
_SECRET_RE = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?)($|_)")


def mask_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """Hide values whose names look secret (an env var *name* such as ``api_key_env`` is kept)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        lk = k.lower()
        if _SECRET_RE.search(lk) and not lk.endswith("_env") and v:
            out[k] = "***"
        elif isinstance(v, dict):
            out[k] = mask_secrets(v)
        else:
            out[k] = v
    return out


def _masked_config(prepared: PreparedRun) -> dict[str, Any]:
    data = prepared.config.model_dump(mode="json")
    data["scenario"] = prepared.config.scenario.model_dump(mode="json", exclude_none=True)
    if data.get("sut"):
        data["sut"]["params"] = mask_secrets(data["sut"].get("params", {}))
    return data


def _write_records(path: Path, reports: list[ShardReport]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for rep in reports:
        if rep.records is None:
            continue
        for k, v in rep.records.items():
            arrays[f"shard{rep.shard}/{k}"] = v
        arrays[f"shard{rep.shard}/errors"] = np.array(rep.errors, dtype=object).astype(str)
        arrays[f"shard{rep.shard}/finish_reasons"] = np.array(rep.finish_reasons, dtype=object).astype(str)
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
