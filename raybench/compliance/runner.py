"""``raybench compliance``: run a compliance test's runs, verify them, write ``DIR/TESTxx/``.

For a test, with the run options of ``raybench run``:

1. the reference runs it compares against, unless given (``reference_performance`` /
   ``reference_accuracy``: a raybench run directory or a submission ``<scenario>/`` folder):
   a performance run and/or an accuracy run without audit.config, into ``DIR/runs/reference-*``;
2. the compliance run, with the test's audit.config (``DIR/runs/TESTxx/audit.config``, applied as
   LoadGen applies one), into ``DIR/runs/TESTxx``;
3. the verification (:mod:`raybench.compliance.verify`), and ``DIR/TESTxx/`` laid out as the
   official ``run_verification.py`` leaves it, ready to be copied to
   ``<benchmark>/<scenario>/TESTxx/`` of a submission:

   ========  ==============================================================================
   TEST01    verify_accuracy.txt, verify_performance.txt, accuracy/mlperf_log_accuracy.json,
             performance/run_1/mlperf_log_{summary,detail}.txt
   TEST04    verify_performance.txt, performance/run_1/mlperf_log_{summary,detail}.txt
   TEST06    verify_accuracy.txt, accuracy/mlperf_log_accuracy.json
   TEST07    verify_accuracy.txt, accuracy/..., performance/run_1/...
   TEST08    verify_accuracy.txt, accuracy/..., performance/run_1/...
   TEST09    verify_output_len.txt, accuracy/..., performance/run_1/...
   ========  ==============================================================================
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raybench.compliance import verify as V
from raybench.compliance.catalog import TESTS, ComplianceRefused, audit_config_text, checker_model, refusal
from raybench.config import RunConfig
from raybench.core.logs.atomic import atomic_write_text

__all__ = ["ComplianceOptions", "ComplianceOutcome", "run_compliance"]

PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACCURACY_LOG = "mlperf_log_accuracy.json"


@dataclass(frozen=True)
class ComplianceOptions:
    """Verification knobs (defaults: the official scripts' and the benchmark's values).

    Attributes:
        dtype: TEST01: how the first element of each payload is read (``byte`` as the official
            default; the benchmark's README names another for some benchmarks).
        token_dtype / eos_token_id: TEST06 (raybench token payloads are int32 ids).
        accuracy_threshold / accuracy_metric: TEST07 (default: gpt-oss-120b's 60.698 on
            ``exact_match``, else the workload's own target for its first metric).
        min_output_tokens / max_output_tokens: TEST09 (default: gpt-oss-120b's bounds).
        ne_tolerance: TEST08's relative NE tolerance.
    """

    dtype: str = "byte"
    token_dtype: str = "int32"
    eos_token_id: int = 2
    accuracy_threshold: float | None = None
    accuracy_metric: str | None = None
    min_output_tokens: float | None = None
    max_output_tokens: float | None = None
    ne_tolerance: float = 0.001


@dataclass
class ComplianceOutcome:
    """What a compliance test produced: the verdict, ``DIR/TESTxx`` and the runs it made."""

    test: str
    passed: bool
    test_dir: Path
    checks: dict[str, bool] = field(default_factory=dict)
    runs: dict[str, Path] = field(default_factory=dict)


ExecutorFor = Callable[[RunConfig], Any]
Status = Callable[[str], None]


def _run(cfg: RunConfig, executor_for: ExecutorFor, keep: tuple[str, ...] = ()) -> Path:
    """One run into ``cfg.run_dir``, emptied first (but for ``keep``): this command owns ``DIR/runs/``."""
    from raybench.run import execute_run, prepare_run

    assert cfg.run_dir is not None
    old = Path(cfg.run_dir)
    if old.is_dir():
        for item in old.iterdir():
            if item.name not in keep:
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    prepared = prepare_run(cfg)
    executor = executor_for(cfg)
    try:
        return execute_run(prepared, executor).run_dir
    finally:
        close = getattr(executor, "close", None)
        if callable(close):
            close()


def _reference_dir(path: str | Path, kind: str) -> Path:
    """A reference given by the user: a raybench run directory or a submission ``<scenario>/`` folder."""
    p = Path(path)
    sub = p / "performance" / "run_1" if kind == "performance" else p / "accuracy"
    want = "mlperf_log_detail.txt" if kind == "performance" else ACCURACY_LOG
    for cand in (sub, p):
        if (cand / want).is_file():
            return cand
    raise ValueError(f"--reference-{kind}: {p} has no {want} (nor {sub.relative_to(p)}/{want})")


def _copy(src_dir: Path, names: tuple[str, ...], dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(src_dir / name, dst / name)


def run_compliance(test: str, config: RunConfig, out: str | Path, *, executor_for: ExecutorFor,
                   reference_performance: str | Path | None = None, reference_accuracy: str | Path | None = None,
                   options: ComplianceOptions | None = None, status: Status | None = None) -> ComplianceOutcome:
    """Run compliance ``test`` for the run ``config`` describes and write ``out/TESTxx/``.

    Args:
        executor_for: builds the executor of each run (``InProcessExecutor`` in tests).
        reference_performance / reference_accuracy: reuse these runs instead of running them.

    Raises:
        ComplianceRefused: the test does not apply (one line: why), before anything runs.
        ValueError: a bad reference directory or option (one line naming it).
    """
    from raybench.registry import get_workload, make_library, workload_params
    from raybench.run import resolve_run_settings

    opts = options or ComplianceOptions()
    test = test.upper()
    if test not in TESTS:
        raise ComplianceRefused(f"unknown compliance test {test!r} (known: {', '.join(TESTS)})")
    spec = TESTS[test]
    wl = get_workload(config.workload.name)
    model = config.model or wl.mlperf_model
    if config.scenario.name == "Concurrency":
        raise ComplianceRefused("compliance tests are defined for the MLPerf scenarios; Concurrency is not one")
    base = config.model_copy(update={"audit_config": "none", "mode": "PerformanceOnly"})
    settings, _ = resolve_run_settings(base)
    library = make_library(wl, workload_params(wl, config.workload.params))
    why = refusal(test, model, config.scenario.name, token_counts=bool(settings.use_token_latencies),
                  fixed_issue_order=getattr(library, "issue_order", None) is not None)
    if why:
        raise ComplianceRefused(why)
    if test == "TEST07" and wl.accuracy is None:
        raise ComplianceRefused(f"TEST07 scores accuracy: workload {wl.name} has no scorer")
    if test == "TEST09" and checker_model(model) != "gpt-oss-120b" and (
            opts.min_output_tokens is None or opts.max_output_tokens is None):
        raise ValueError("TEST09 needs --min-output-tokens and --max-output-tokens for a benchmark other than gpt-oss-120b")
    ref_perf = _reference_dir(reference_performance, "performance") if reference_performance else None
    ref_acc = _reference_dir(reference_accuracy, "accuracy") if reference_accuracy else None

    out = Path(out)
    say = status or (lambda msg: None)
    runs: dict[str, Path] = {}
    if spec.reference_performance and ref_perf is None:
        say(f"{test}: reference performance run")
        ref_perf = runs["reference-performance"] = _run(
            base.model_copy(update={"run_dir": str(out / "runs" / "reference-performance")}), executor_for)
    if spec.reference_accuracy and ref_acc is None:
        say(f"{test}: reference accuracy run")
        ref_acc = runs["reference-accuracy"] = _run(
            base.model_copy(update={"run_dir": str(out / "runs" / "reference-accuracy"), "mode": "AccuracyOnly"}),
            executor_for)
    run_dir = out / "runs" / test
    audit = run_dir / "audit.config"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(audit, audit_config_text(test, model, total_count=int(library.total_count)))
    say(f"{test}: compliance run with {audit}")
    runs[test] = _run(base.model_copy(update={"run_dir": str(run_dir), "audit_config": str(audit)}), executor_for,
                      keep=(audit.name,))

    test_dir = out / test
    if test_dir.exists():
        shutil.rmtree(test_dir)  # this command owns DIR/TESTxx: leave exactly what the layout expects
    test_dir.mkdir(parents=True)
    checks = _verify(test, config, wl, model, run_dir, ref_perf, ref_acc, test_dir, opts, library)
    if test != "TEST04":
        _copy(run_dir, (ACCURACY_LOG,), test_dir / "accuracy")
    if test != "TEST06":
        _copy(run_dir, PERF_FILES, test_dir / "performance" / "run_1")
    if test == "TEST01":  # the accuracy check passes deterministically or through the baseline rule
        passed = checks["performance"] and (checks["accuracy"] or checks.get("accuracy_baseline", False))
    else:
        passed = all(checks.values())
    return ComplianceOutcome(test, passed, test_dir, checks, runs)


def _verify(test: str, config: RunConfig, wl: Any, model: str | None, run_dir: Path, ref_perf: Path | None,
            ref_acc: Path | None, test_dir: Path, opts: ComplianceOptions, library: Any) -> dict[str, bool]:
    """Run the test's verification; write its ``verify_*.txt`` into ``test_dir``; the checks' verdicts."""
    acc_log = run_dir / ACCURACY_LOG
    checks: dict[str, bool] = {}

    def write(name: str, result: tuple[str, bool], check: str) -> None:
        atomic_write_text(test_dir / name, result[0])
        checks[check] = result[1]

    if test == "TEST01":
        assert ref_acc is not None and ref_perf is not None
        write("verify_accuracy.txt", V.verify_test01_accuracy(ref_acc / ACCURACY_LOG, acc_log, opts.dtype), "accuracy")
        write("verify_performance.txt", V.verify_test01_performance(ref_perf / "mlperf_log_detail.txt",
                                                                    run_dir / "mlperf_log_detail.txt"), "performance")
        if not checks["accuracy"] and wl.accuracy is not None:
            checks["accuracy_baseline"] = _test01_baseline(wl, model, ref_acc / ACCURACY_LOG, acc_log,
                                                           test_dir / "accuracy", library, config)
    elif test == "TEST04":
        assert ref_perf is not None
        write("verify_performance.txt", V.verify_test04_performance(ref_perf / "mlperf_log_summary.txt",
                                                                    run_dir / "mlperf_log_summary.txt"), "performance")
    elif test == "TEST06":
        write("verify_accuracy.txt", V.verify_test06(acc_log, config.scenario.name, opts.token_dtype,
                                                     opts.eos_token_id), "accuracy")
    elif test == "TEST07":
        write("verify_accuracy.txt", _test07(wl, model, acc_log, opts, library, config), "accuracy")
    elif test == "TEST08":
        assert ref_acc is not None
        write("verify_accuracy.txt", V.verify_test08(ref_acc / ACCURACY_LOG, acc_log, opts.ne_tolerance), "accuracy")
    elif test == "TEST09":
        gpt = checker_model(model) == "gpt-oss-120b"
        lo = opts.min_output_tokens if opts.min_output_tokens is not None else (1150.38 if gpt else 0.0)
        hi = opts.max_output_tokens if opts.max_output_tokens is not None else (1406.02 if gpt else 0.0)
        write("verify_output_len.txt", V.verify_test09(acc_log, lo, hi), "output_length")
    return checks


def _test01_baseline(wl: Any, model: str | None, ref_log: Path, test_log: Path, acc_dir: Path, library: Any,
                     config: RunConfig) -> bool:
    """TEST01 part III (answers that differ legitimately): score the accuracy run's answers to the
    samples the compliance run logged (``baseline_accuracy.txt``) and the compliance run's answers
    (``compliance_accuracy.txt``, also ``accuracy.txt``); the checker accepts deltas within 1 %.
    The delta report goes to ``DIR/runs/TEST01/verify_accuracy_baseline.txt``."""
    from raybench.core.logs.accuracy_log import read_accuracy_log
    from raybench.core.spec import load_object
    from raybench.registry import workload_params

    scorer = load_object(wl.accuracy)
    params = workload_params(wl, config.workload.params)
    test_entries = read_accuracy_log(test_log)
    wanted = {idx for idx, _ in test_entries}
    first: dict[int, bytes] = {}
    for idx, data in read_accuracy_log(ref_log):
        if idx in wanted:
            first.setdefault(idx, data)
    baseline = scorer(sorted(first.items()), library, params)
    compliance = scorer(test_entries, library, params)
    acc_dir.mkdir(parents=True, exist_ok=True)
    for name, res in (("baseline_accuracy.txt", baseline), ("compliance_accuracy.txt", compliance),
                      ("accuracy.txt", compliance)):
        atomic_write_text(acc_dir / name, res.accuracy_txt if res.accuracy_txt.endswith("\n") else res.accuracy_txt + "\n")
    metrics = list(compliance.targets) or list(compliance.metrics)[:1]
    text, ok = V.baseline_delta_check(dict(baseline.metrics), dict(compliance.metrics), metrics, checker_model(model))
    # kept next to the run, not in TEST01/ (whose files are exactly the official ones)
    atomic_write_text(test_log.parent / "verify_accuracy_baseline.txt", text)
    return ok


def _test07(wl: Any, model: str | None, acc_log: Path, opts: ComplianceOptions, library: Any,
            config: RunConfig) -> tuple[str, bool]:
    """TEST07's accuracy script is the workload's scorer, run on every logged answer."""
    from raybench.core.logs.accuracy_log import read_accuracy_log
    from raybench.core.spec import load_object
    from raybench.registry import workload_params

    res = load_object(wl.accuracy)(read_accuracy_log(acc_log), library, workload_params(wl, config.workload.params))
    gpt = checker_model(model) == "gpt-oss-120b"
    metric = opts.accuracy_metric or ("exact_match" if gpt else next(iter(res.targets), None))
    if metric is None:
        raise ValueError("TEST07: the workload's scorer names no target; pass --accuracy-metric and --accuracy-threshold")
    threshold = opts.accuracy_threshold
    if threshold is None:
        threshold = 60.698 if gpt else res.targets.get(metric)
    if threshold is None:
        raise ValueError(f"TEST07: no threshold for {metric!r}; pass --accuracy-threshold")
    score = res.metrics.get(metric)
    return V.verify_test07(res.accuracy_txt, None if score is None else float(score), float(threshold))
