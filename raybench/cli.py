"""The ``raybench`` command line: a thin shell over ``raybench.core`` (heavy imports inside commands).

Exit codes of ``raybench run`` (docs/USAGE.md has the full table):

``raybench compliance TESTxx``: 0 TEST PASS, 1 TEST FAIL, 2 usage (also a test that does not
apply to the benchmark), 70 internal.

* 0: the run is VALID; 1: INVALID (also a run stopped by Ctrl-C or SIGTERM: what it measured is
  written and the reason is listed);
* 2: a usage or config error, one line naming the bad field or file, before anything runs (also
  a cluster that can never place the run, a placement that timed out, an unreachable
  ``ray.address``);
* 70: an internal error (a bug): one line, the traceback in ``crash.log`` (run directory, else cwd);
* 130 / 143: Ctrl-C / SIGTERM before anything was measured (one line: what was going on and what
  was stopped).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MLPerf-style inference benchmarks at cluster scale on Ray.",
    pretty_exceptions_enable=False,
)

EXIT_VALID, EXIT_INVALID, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 70


def _status_line(msg: str) -> None:
    print(f"raybench: {msg}", file=sys.stderr, flush=True)


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"raybench: error: {msg}", err=True)
    return typer.Exit(EXIT_USAGE)


@app.command("list")
def list_cmd() -> None:
    """List workloads, SUTs and scenarios (works with no optional dependency installed)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from raybench.core.scenarios import SCENARIO_NAMES
    from raybench.registry import broken_suts, broken_workloads, list_suts, list_workloads

    con = Console()
    t = Table(title="Workloads", show_lines=False)
    for col in ("name", "scenarios", "default SUT", "MLPerf model", "description"):
        t.add_column(col)
    for name, w in list_workloads().items():
        t.add_row(name, ", ".join(w.scenarios), w.default_sut, w.mlperf_model or "-", w.description)
    for name, why in broken_workloads().items():  # a package that failed to import: say why
        t.add_row(name, "-", "-", "-", f"[red]broken: {escape(why)}[/red]")
    con.print(t)
    t = Table(title="SUTs")
    for col in ("name", "extra", "description"):
        t.add_column(col)
    for name, s in list_suts().items():
        t.add_row(name, s.extra or "-", s.description)
    for name, why in broken_suts().items():
        t.add_row(name, "-", f"[red]broken: {escape(why)}[/red]")
    con.print(t)
    con.print("Scenarios: " + ", ".join(SCENARIO_NAMES) + "  (Concurrency = closed loop, MLPerf Endpoints style)")


@app.command("run")
def run_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config (optional)."),
    workload: str | None = typer.Option(None, "--workload", "-w", help="Workload name (see `raybench list`)."),
    sut: str | None = typer.Option(None, "--sut", help="SUT name (default: the workload's)."),
    scenario: str | None = typer.Option(None, "--scenario", "-s", help="SingleStream, MultiStream, Server, Offline or Concurrency."),
    mode: str | None = typer.Option(None, "--mode", help="PerformanceOnly (default) or AccuracyOnly."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.path=value (repeatable)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Results root directory."),
    shards: int | None = typer.Option(None, "--shards", help="Load-generator shards (Ray: default one per node)."),
    executor: str | None = typer.Option(None, "--executor", help="ray (default) or inprocess."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    user_conf: str | None = typer.Option(None, "--user-conf", help="MLPerf user.conf."),
    mlperf_conf: str | None = typer.Option(None, "--mlperf-conf", help="mlperf.conf (default: bundled; 'none' to skip)."),
    audit_config: str | None = typer.Option(None, "--audit-config", help="Compliance audit.config, applied last as LoadGen does (default: ./audit.config if present; 'none' to skip)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    slo: str | None = typer.Option(None, "--slo", help="Goodput SLOs in ms: ttft_ms=500,tpot_ms=50,e2el_ms=10000."),
    export: str | None = typer.Option(None, "--export", help="Also write requests.jsonl|requests.parquet (keeps records)."),
) -> None:
    """Run one benchmark; writes MLPerf-compatible logs and result.json into a run directory."""
    from raybench.config import ConfigError, load_run_config, parse_slo

    overrides: list[str] = []
    for key, val in (("workload", workload), ("sut", sut), ("scenario", scenario), ("mode", mode), ("out", out),
                     ("executor", executor), ("user_conf", user_conf), ("mlperf_conf", mlperf_conf),
                     ("audit_config", audit_config)):
        if val is not None:
            overrides.append(f"{key}={val}")
    if shards is not None:
        overrides.append(f"shards={shards}")
    if address is not None:
        overrides.append(f"ray.address={address}")
    if no_report:
        overrides.append("report=false")
    if export is not None and export not in ("jsonl", "parquet"):
        raise _fail(f"--export: expected jsonl or parquet, got {export!r}")
    try:
        if slo is not None:
            overrides += parse_slo(slo)
        if export is not None:
            overrides.append("records=all")
        cfg = load_run_config(config, overrides + list(set_))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from raybench.signals import interrupts

    with interrupts():
        code = _guarded_run(cfg, quiet, export)
    raise typer.Exit(code)


def _guarded_run(cfg: Any, quiet: bool, export: str | None = None) -> int:
    """:func:`_run`, with interrupts before any measurement and internal errors turned into exit codes."""
    try:
        return _run(cfg, quiet, export)
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        from raybench.signals import interrupt_reason, signum_of

        # The Ray executor says what it was doing and what it stopped (RunInterrupted.message).
        msg = getattr(exc, "message", None) or f"{interrupt_reason(exc)} before anything was measured; nothing was written"
        typer.echo(f"raybench: {msg}", err=True)
        return int(getattr(exc, "exit_code", 128 + signum_of(exc)))
    except Exception as exc:  # a bug: say so in one line, keep the traceback
        import traceback

        where = Path(getattr(exc, "run_dir", None) or ".") / "crash.log"
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_text(traceback.format_exc())
        except OSError:
            where = Path("<not written>")
        first = str(exc).splitlines()[0] if str(exc) else ""
        typer.echo(f"raybench: internal error: {type(exc).__name__}: {first} (traceback in {where})", err=True)
        return EXIT_CRASH


def _run(cfg: Any, quiet: bool, export: str | None = None) -> int:
    from rich.console import Console

    from raybench.core.settings import SettingsError
    from raybench.registry import RegistryError
    from raybench.run import execute_run, prepare_run

    con = Console(stderr=True)
    try:
        prepared = prepare_run(cfg)
        executor = _make_executor(cfg)
    except (RegistryError, SettingsError, ValueError, ImportError, FileNotFoundError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if cfg.shards and prepared.shard_count(cfg.shards) != cfg.shards:
        con.print(f"[yellow]{cfg.scenario.name} is serial by definition: running 1 shard instead of {cfg.shards}.[/yellow]")
    for w in prepared.warnings:
        con.print(f"[yellow]warning: {w}[/yellow]")
    live = None
    if not quiet:
        from raybench.progress import LiveProgress

        live = LiveProgress(con, cfg)
    started: list[bool] = []

    def progress(shard: int, snap: dict[str, Any]) -> None:
        if not started:  # one plain line, also for logs and scripts, when the first shard reports
            started.append(True)
            print(f"raybench: running ({cfg.workload.name} / {cfg.scenario.name}; first progress from shard {shard})",
                  file=sys.stderr, flush=True)
        if live is not None:
            live.update(shard, snap)

    def status(msg: str) -> None:  # start-up news (placement, interrupts): one plain line each
        _status_line(msg)
        if live is not None:
            live.status(msg)

    if hasattr(executor, "on_status"):
        executor.on_status = status
    close = getattr(executor, "close", None)
    try:
        if live:
            live.start()
        outcome = execute_run(prepared, executor, progress)
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except Exception as exc:
        exc.run_dir = prepared.run_dir  # type: ignore[attr-defined]  # crash.log goes next to the run
        raise
    finally:
        if live:
            live.stop()
        if callable(close):
            close()
    if cfg.report:
        try:
            from raybench.report import write_report

            write_report(outcome.run_dir)
        except ImportError:
            con.print("report.html skipped: matplotlib is not installed (pip install 'raybench[report]')")
        except Exception as exc:  # the report is a convenience; never lose the run for it
            con.print(f"[yellow]report not written: {type(exc).__name__}: {exc}[/yellow]")
    from raybench.progress import print_summary

    print_summary(Console(), outcome)
    if export is not None:
        from raybench.export import ExportError, export_run

        try:
            con.print(f"per-request export: {export_run(outcome.run_dir, export)}")
        except (ExportError, ImportError) as exc:
            con.print(f"[yellow]export not written: {exc}[/yellow]")
    return EXIT_VALID if outcome.metrics.validity == "VALID" else EXIT_INVALID


def _make_executor(cfg: Any) -> Any:
    if cfg.executor == "inprocess":
        from raybench.inprocess import InProcessExecutor

        return InProcessExecutor(shards=cfg.shards or 1)
    from raybench.ray.executor import RayExecutor

    return RayExecutor(cfg.ray, on_status=_status_line)


@app.command("accuracy")
def accuracy_cmd(
    workload: str = typer.Argument(..., help="Workload name."),
    run_dir: Path = typer.Argument(..., help="Run directory holding mlperf_log_accuracy.json."),
    set_: list[str] = typer.Option([], "--set", help="Workload parameter: key=value (repeatable)."),
) -> None:
    """Score mlperf_log_accuracy.json of a run and write accuracy.txt."""
    import yaml

    from raybench.config import ConfigError, parse_set, set_path
    from raybench.core.logs.accuracy_log import read_accuracy_log
    from raybench.core.logs.atomic import atomic_write_text
    from raybench.core.spec import load_object
    from raybench.registry import RegistryError, get_workload, make_library

    try:
        spec = get_workload(workload)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    if not spec.accuracy:
        raise _fail(f"workload {workload} has no accuracy scorer")
    params: dict[str, Any] = dict(spec.params)
    cfg_file = run_dir / "config.yaml"
    if cfg_file.exists():
        saved = yaml.safe_load(cfg_file.read_text()) or {}
        if saved.get("workload", {}).get("name") == workload:
            params.update(saved["workload"].get("params") or {})
    try:
        for item in set_:
            keys, val = parse_set(item)
            set_path(params, keys, val)
        entries = read_accuracy_log(run_dir / "mlperf_log_accuracy.json")
        if not entries:
            raise ValueError(f"{run_dir / 'mlperf_log_accuracy.json'}: no entries to score (a performance run logs "
                             "none; score a --mode AccuracyOnly run)")
        library = make_library(spec, params)
        res = load_object(spec.accuracy)(entries, library, params)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    atomic_write_text(run_dir / "accuracy.txt", res.accuracy_txt if res.accuracy_txt.endswith("\n") else res.accuracy_txt + "\n")
    typer.echo(res.accuracy_txt.rstrip())
    if res.passed is not None:
        typer.echo("PASS" if res.passed else "FAIL")
    raise typer.Exit(0 if res.passed in (True, None) else 1)


@app.command("sweep")
def sweep_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config shared by every point (optional)."),
    workload: str | None = typer.Option(None, "--workload", "-w", help="Workload name."),
    sut: str | None = typer.Option(None, "--sut", help="SUT name (default: the workload's)."),
    concurrency: str | None = typer.Option(None, "--concurrency", help="Explicit concurrencies, e.g. 1,4,16,64."),
    c_min: int | None = typer.Option(None, "--c-min", help="Endpoints rules: ultra-low point (1..32)."),
    c_max: int | None = typer.Option(None, "--c-max", help="Endpoints rules: highest concurrency (> 32)."),
    n_points: int = typer.Option(7, "--points", help="Points chosen from --c-min/--c-max (7..32)."),
    qps: str | None = typer.Option(None, "--qps", help="Poisson mode: target QPS values, e.g. 1,2,4 (Server runs)."),
    rates: str | None = typer.Option(None, "--rates", help="Rate mode: request rates, e.g. 10,20,40 (Server runs with "
                                     "the config's scenario.arrival shape; Poisson by default)."),
    warmup_s: float = typer.Option(0.0, "--warmup-s", help="Seconds at the start of each point excluded from its metrics."),
    warmup_queries: int = typer.Option(0, "--warmup-queries", help="First N queries of each point excluded."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.path=value (repeatable)."),
    out: str = typer.Option("results", "--out", "-o", help="Results root; the sweep goes to OUT/<utc>-sweep-<workload>."),
    executor: str | None = typer.Option(None, "--executor", help="ray (default) or inprocess."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address."),
    slo: str | None = typer.Option(None, "--slo", help="Goodput SLOs in ms: ttft_ms=500,tpot_ms=50,e2el_ms=10000."),
) -> None:
    """Concurrency, target-QPS or request-rate sweep: one run per point, Pareto step function, PNG charts."""
    import datetime as dt

    from raybench.config import ConfigError, load_run_config, parse_slo
    from raybench.registry import RegistryError
    from raybench.sweep import run_sweep, sweep_values

    def _nums(text: str | None, kind: type, flag: str) -> list[Any] | None:
        if text is None:
            return None
        try:
            return [kind(x) for x in text.replace(" ", "").split(",") if x]
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise _fail(f"{flag}: expected a comma-separated list of {what}, got {text!r}") from None

    overrides = [f"{k}={v}" for k, v in (("workload", workload), ("sut", sut), ("executor", executor)) if v is not None]
    if address is not None:
        overrides.append(f"ray.address={address}")
    overrides += ["report=false", *set_]
    try:
        if slo is not None:
            overrides += parse_slo(slo)
        mode, values = sweep_values(concurrencies=_nums(concurrency, int, "--concurrency"), c_min=c_min, c_max=c_max, n_points=n_points,
                                    qps=_nums(qps, float, "--qps"), rates=_nums(rates, float, "--rates"))
        base = load_run_config(config, [*overrides, *(["scenario=Server"] if mode in ("qps", "rate") else [])])
        if mode in ("qps", "rate") and getattr(getattr(base.scenario, "arrival", None), "kind", None) == "trace":
            raise ValueError(f"--{mode if mode == 'qps' else 'rates'}: scenario.arrival.kind=trace sends at the trace's own timestamps, so a rate "
                             "does not apply (scenario.arrival.speedup scales the trace)")
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _check_out_root(out)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    sweep_dir = Path(out) / f"{stamp}-sweep-{base.workload.name}-{mode}"
    typer.echo(f"sweep ({mode}): {', '.join(f'{v:g}' for v in values)} -> {sweep_dir}")

    def _executor(cfg: Any) -> Any:
        return _make_executor(cfg)

    def _show(p: Any) -> None:
        x = f"c={p.concurrency}" if p.concurrency is not None else f"{'rate' if mode == 'rate' else 'qps'}={p.qps_target:g}"
        tpu = f"{p.tps_per_user:.1f}" if p.tps_per_user else "-"
        ttft = f"{p.ttft_p90_ms:.1f}" if p.ttft_p90_ms is not None else "-"
        typer.echo(f"  {x}: system TPS {p.system_tps:.1f}, TPS/user {tpu}, TTFT p90 {ttft} ms, QPS {p.qps:.2f}, {p.validity}")

    from raybench.signals import interrupts

    try:
        with interrupts():
            res = run_sweep(sweep_dir, overrides, mode=mode, values=values, config_path=config, warmup_s=warmup_s,
                            warmup_queries=warmup_queries, executor_factory=_executor, on_point=_show)
    except KeyboardInterrupt as exc:
        raise _series_interrupted(exc, "sweep", sweep_dir / "sweep_summary.json", "points") from None
    except (ConfigError, RegistryError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    typer.echo(f"Pareto frontier ({mode}): {res.frontier}; files in {res.sweep_dir}")
    raise typer.Exit(EXIT_VALID if all(p.validity == "VALID" for p in res.points) else EXIT_INVALID)


def _check_out_root(out: str) -> None:
    """``--out`` of a series of runs (sweep, peak search): a directory that can be created."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise _fail(f"--out: {root} is a file, not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(f"--out: cannot create {root}: {exc.strerror or type(exc).__name__}") from None


def _series_interrupted(exc: KeyboardInterrupt, what: str, summary: Path, key: str) -> typer.Exit:
    """Ctrl-C / SIGTERM during a series of runs (sweep, peak search): one line, and exit 1 when
    runs were kept (as a run stopped mid-measurement), else 130 / 143."""
    import json

    from raybench.signals import interrupt_reason, signum_of

    try:
        kept = len(json.loads(summary.read_text()).get(key) or [])
    except (OSError, ValueError):
        kept = 0
    if kept:
        typer.echo(f"raybench: {what} stopped: {interrupt_reason(exc)}; {kept} run(s) kept in {summary.parent}", err=True)
        return typer.Exit(EXIT_INVALID)
    msg = getattr(exc, "message", None) or f"{interrupt_reason(exc)} before anything was measured; nothing was written"
    typer.echo(f"raybench: {what}: {msg}", err=True)
    return typer.Exit(int(getattr(exc, "exit_code", 128 + signum_of(exc))))


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory with records (records: all or shard)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default RUN_DIR/requests.<format>)."),
) -> None:
    """Write one row per request (send, first token, every token, end, tokens, finish reason, error)."""
    from raybench.export import ExportError, export_run

    try:
        typer.echo(str(export_run(run_dir, fmt, out)))
    except (ExportError, ImportError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"--out: cannot write {out or run_dir}: {exc.strerror or type(exc).__name__}") from None


_RUN_FILES = ("result.json", "histograms.json", "timeline.json", "config.yaml", "mlperf_log_detail.txt",
              "sweep_summary.json", "peak_summary.json")


def _check_run_dir(path: Path) -> None:
    """Refuse a directory holding none of a run's files (a partial run directory is fine)."""
    if path.is_dir() and not any((path / name).is_file() for name in _RUN_FILES):
        raise _fail(f"{path}: not a run directory (no result.json, histograms.json or sweep/peak summary)")


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory (or a sweep directory with sweep_summary.json)."),
) -> None:
    """Write report.html (self-contained) and plots/*.png into a run directory."""
    try:
        from raybench.report import write_report
    except ImportError as exc:  # pragma: no cover - matplotlib missing
        raise _fail(f"report needs matplotlib (pip install 'raybench[report]'): {exc}") from None
    _check_run_dir(run_dir)
    try:
        path = write_report(run_dir)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    typer.echo(str(path))


@app.command("compare")
def compare_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for the overlaid CDF plots."),
) -> None:
    """Print runs side by side and (with --out) write overlaid latency/TTFT/TPOT CDFs."""
    from rich.console import Console
    from rich.table import Table

    from raybench.report.compare import compare_runs

    for d in run_dirs:
        _check_run_dir(d)
    try:
        runs, rows, pngs = compare_runs(run_dirs, out)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    t = Table(title="raybench compare")
    t.add_column("")
    names = [r.label for r in runs]
    for i, r in enumerate(runs):
        t.add_column(f"[{i}] {r.label}" if names.count(r.label) > 1 else r.label, overflow="fold")
    for row in rows:
        t.add_row(*row)
    Console(width=max(100, 40 + 28 * len(runs))).print(t)
    for p in pngs:
        typer.echo(str(p))


@app.command("package")
def package_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories: one performance and one accuracy run per scenario."),
    org: str = typer.Option(..., "--org", help="Submitter (organisation) name: <division>/<org>/."),
    system_json: Path = typer.Option(..., "--system-json", help="System description JSON (the checker's fields)."),
    measurements_json: Path = typer.Option(..., "--measurements-json", help="measurements.json: input_data_types, retraining, starting_weights_filename, weight_data_types, weight_transformations."),
    division: str = typer.Option(..., "--division", help="closed or open."),
    out: Path = typer.Option(..., "--out", "-o", help="Submission root directory."),
    system: str | None = typer.Option(None, "--system", help="System folder name (default: the system JSON's file stem)."),
    benchmark: str | None = typer.Option(None, "--benchmark", help="MLPerf benchmark name (default: from the workload, e.g. dlrmv3 -> dlrm-v3)."),
    version: str = typer.Option("v6.0", "--version", help="Checker version whose seeds the runs must carry (v6.0 or v6.1)."),
    compliance: list[str] = typer.Option([], "--compliance", help="[SCENARIO=]DIR/TESTxx from raybench compliance (repeatable)."),
) -> None:
    """Write an MLPerf submission tree (v6.0 layout) from run directories; refuses runs the checker would reject."""
    import os

    from raybench.submission.package import PackageError, PackageOptions, package

    tests: list[tuple[str | None, Path]] = []
    for item in compliance:
        scen, sep, path = item.rpartition("=")
        tests.append((scen if sep else None, Path(path)))
    allow_short = os.environ.get("RAYBENCH_PACKAGE_ALLOW_SHORT") == "1"
    if allow_short:
        _status_line("RAYBENCH_PACKAGE_ALLOW_SHORT=1: runs shorter than 600 s accepted (tests only; the checker refuses them)")
    opts = PackageOptions(org=org, division=division, system_json=system_json, measurements_json=measurements_json,
                          out=out, system=system, benchmark=benchmark, version=version, compliance=tuple(tests),
                          allow_short=allow_short)
    try:
        res = package(run_dirs, opts)
    except (PackageError, ValueError, OSError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    for d in res.scenario_dirs:
        typer.echo(str(d))
    typer.echo(f"submission tree: {res.root} ({len(res.files)} files); check it with the MLPerf submission checker "
               f"(docs/SUBMITTING.md)")


@app.command("search-peak")
def search_peak_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config shared by every probe (optional)."),
    workload: str | None = typer.Option(None, "--workload", "-w", help="Workload name."),
    sut: str | None = typer.Option(None, "--sut", help="SUT name (default: the workload's)."),
    scenario: str | None = typer.Option(None, "--scenario", "-s", help="Server (default; target QPS) or Concurrency (streams)."),
    start: float | None = typer.Option(None, "--start", help="Lower bound to start from (default: settings.server_target_qps / target_concurrency)."),
    criterion: str = typer.Option("constraints", "--criterion", help="constraints (LoadGen: latency bounds only) or valid (the whole verdict)."),
    max_probes: int = typer.Option(40, "--max-probes", help="Stop after this many runs."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.path=value (repeatable)."),
    user_conf: str | None = typer.Option(None, "--user-conf", help="MLPerf user.conf."),
    out: str = typer.Option("results", "--out", "-o", help="Results root; the search goes to OUT/<utc>-peak-<workload>-<scenario>."),
    executor: str | None = typer.Option(None, "--executor", help="ray (default) or inprocess."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address."),
) -> None:
    """LoadGen's FindPeakPerformance: the highest Server QPS (or concurrency) whose run meets the latency bounds."""
    import datetime as dt

    from raybench.config import ConfigError, load_run_config
    from raybench.registry import RegistryError
    from raybench.submission.peak import run_peak_search

    overrides = [f"{k}={v}" for k, v in (("workload", workload), ("sut", sut), ("executor", executor),
                                         ("user_conf", user_conf)) if v is not None]
    if address is not None:
        overrides.append(f"ray.address={address}")
    if scenario is not None or config is None:
        overrides.append(f"scenario={scenario or 'Server'}")
    overrides += ["report=false", *set_]
    try:
        base = load_run_config(config, overrides)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if base.scenario.name not in ("Server", "Concurrency"):
        raise _fail(f"scenario: peak search runs Server (target QPS) or Concurrency (streams), not {base.scenario.name}")
    # Everything the command line decides is checked before the search directory is announced.
    if criterion not in ("constraints", "valid"):
        raise _fail(f"--criterion: expected 'constraints' or 'valid', got {criterion!r}")
    if max_probes < 1:
        raise _fail(f"--max-probes: must be >= 1, got {max_probes}")
    if base.mode not in (None, "PerformanceOnly"):
        raise _fail(f"mode: peak search makes performance runs, not {base.mode}")
    concurrency = base.scenario.name == "Concurrency"
    if start is not None and not (0 < start < float("inf") and (not concurrency or start == int(start))):
        raise _fail(f"--start: need a positive {'integer target_concurrency' if concurrency else 'target_qps'}, "
                    f"got {start:g}")
    _check_out_root(out)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    search_dir = Path(out) / f"{stamp}-peak-{base.workload.name}-{base.scenario.name}"
    typer.echo(f"peak search ({base.scenario.name}) -> {search_dir}")

    def _show(p: Any) -> None:
        typer.echo(f"  probe {p.index} ({p.phase}): {p.field} {p.value:g}: p{p.percentile * 100:g} {p.p_latency_ms:.3f} ms, "
                   f"{'meets' if p.ok else 'misses'} the bounds, {p.validity}")

    from raybench.signals import interrupts

    try:
        with interrupts():
            res = run_peak_search(search_dir, overrides, config_path=config, start=start, criterion=criterion,
                                  max_probes=max_probes, executor_factory=_make_executor, on_probe=_show)
    except KeyboardInterrupt as exc:
        raise _series_interrupted(exc, "peak search", search_dir / "peak_summary.json", "probes") from None
    except (ConfigError, RegistryError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if res.peak is None:
        typer.echo(f"no peak: {res.message}")
        raise typer.Exit(EXIT_INVALID)
    typer.echo(f"peak {res.field} = {res.peak:g} ({res.message}); files in {res.search_dir}")
    raise typer.Exit(EXIT_VALID)


@app.command("submit", context_settings={"allow_interspersed_args": False})
def submit_cmd(
    args: list[str] = typer.Argument(None, help="The raybench command to run on the cluster, after --: -- run --workload ..."),
    address: str | None = typer.Option(None, "--address", help="Dashboard URL, e.g. http://head:8265 (default: RAY_ADDRESS)."),
    working_dir: Path = typer.Option(Path("."), "--working-dir", help="Uploaded as the job's working_dir (.git, .venv, results and credentials excluded)."),
    fetch: Path | None = typer.Option(None, "--fetch", help="Wait, then copy the run directories back here (through the job logs)."),
    remote_out: str | None = typer.Option(None, "--remote-out", help="Results root on the head (default ~/raybench-results/<job id>)."),
    no_records: bool = typer.Option(False, "--no-records", help="Do not fetch records.npz (stays on the head)."),
    env: list[str] = typer.Option([], "--env", help="Job env var KEY=VALUE (repeatable; stored with the job: no secrets)."),
    pip: list[str] = typer.Option([], "--pip", help="Extra pip requirement for the job's runtime_env (repeatable)."),
    auth: str = typer.Option("auto", "--auth", help="auto | token | none: Ray token auth (token from ~/.ray/auth_token)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return after submitting."),
    allow_secrets: bool = typer.Option(False, "--allow-secrets", help="Upload files that look like private keys or cloud credentials anyway."),
    lost_after: float = typer.Option(30.0, "--lost-after", help="Seconds the dashboard may be unreachable while waiting before giving up (exit 3)."),
) -> None:
    """Submit a raybench command as a Ray job (ray.job_submission), wait, and fetch the results.

    Exit codes: raybench's own (0 VALID, 1 INVALID, 2 usage error) from the job; 2 when the
    submission fails (bad flag, key-like file in the upload, dashboard unreachable or 401/403);
    3 when the dashboard stops answering after the job was submitted; 4 when the fetched results
    are corrupt or unsafe. Each failure is one line on stderr.
    """
    from raybench.ray.jobs import SubmitError, submit

    env_vars: dict[str, str] = {}
    for item in env:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise _fail(f"--env {item!r}: expected KEY=VALUE")
        env_vars[key] = val
    try:
        _, code, _ = submit(list(args or []), address=address, working_dir=working_dir, fetch=fetch, remote_out=remote_out,
                            no_records=no_records, env_vars=env_vars, pip=pip, auth=auth, wait=not no_wait or fetch is not None,
                            lost_after_s=lost_after, allow_secrets=allow_secrets, echo=typer.echo)
    except SubmitError as exc:
        typer.echo(f"raybench: error: {exc}", err=True)
        raise typer.Exit(exc.code) from None
    except ValueError as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    except (OSError, RuntimeError) as exc:
        raise _fail(f"job submission failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    raise typer.Exit(code if code >= 0 else 0)


@app.command("compliance")
def compliance_cmd(
    test: str = typer.Argument(..., help="TEST01, TEST04, TEST06, TEST07, TEST08 or TEST09."),
    config: Path | None = typer.Argument(None, help="YAML run config (optional)."),
    workload: str | None = typer.Option(None, "--workload", "-w", help="Workload name (see `raybench list`)."),
    sut: str | None = typer.Option(None, "--sut", help="SUT name (default: the workload's)."),
    scenario: str | None = typer.Option(None, "--scenario", "-s", help="SingleStream, MultiStream, Server or Offline."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.path=value (repeatable)."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory: DIR/TESTxx/ (submission layout) and DIR/runs/."),
    shards: int | None = typer.Option(None, "--shards", help="Load-generator shards."),
    executor: str | None = typer.Option(None, "--executor", help="ray (default) or inprocess."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address."),
    user_conf: str | None = typer.Option(None, "--user-conf", help="MLPerf user.conf (the submission's)."),
    mlperf_conf: str | None = typer.Option(None, "--mlperf-conf", help="mlperf.conf (default: bundled)."),
    reference_performance: str | None = typer.Option(None, "--reference-performance", help="Reuse this performance run (run directory or submission <scenario>/ folder) instead of running one."),
    reference_accuracy: str | None = typer.Option(None, "--reference-accuracy", help="Reuse this accuracy run instead of running one."),
    dtype: str = typer.Option("byte", "--dtype", help="TEST01: how payloads are compared (byte, int32, int64, float32)."),
    eos_token_id: int = typer.Option(2, "--eos-token-id", help="TEST06: the tokenizer's EOS id."),
    accuracy_threshold: float | None = typer.Option(None, "--accuracy-threshold", help="TEST07: minimum score (default: the benchmark's)."),
    accuracy_metric: str | None = typer.Option(None, "--accuracy-metric", help="TEST07: metric of the workload's scorer."),
    min_output_tokens: float | None = typer.Option(None, "--min-output-tokens", help="TEST09: lower bound of the mean output length."),
    max_output_tokens: float | None = typer.Option(None, "--max-output-tokens", help="TEST09: upper bound of the mean output length."),
) -> None:
    """Run an MLPerf compliance test and its verification; exit 0 on TEST PASS, 1 on TEST FAIL."""
    from raybench.compliance import ComplianceOptions, ComplianceRefused, run_compliance
    from raybench.compliance.verify import DTYPES
    from raybench.config import ConfigError, load_run_config
    from raybench.core.settings import SettingsError
    from raybench.registry import RegistryError

    if dtype not in DTYPES:
        raise _fail(f"--dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
    overrides: list[str] = ["report=false"]
    for key, val in (("workload", workload), ("sut", sut), ("scenario", scenario), ("executor", executor),
                     ("user_conf", user_conf), ("mlperf_conf", mlperf_conf)):
        if val is not None:
            overrides.append(f"{key}={val}")
    if shards is not None:
        overrides.append(f"shards={shards}")
    if address is not None:
        overrides.append(f"ray.address={address}")
    try:
        cfg = load_run_config(config, overrides + list(set_))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    opts = ComplianceOptions(dtype=dtype, eos_token_id=eos_token_id, accuracy_threshold=accuracy_threshold,
                             accuracy_metric=accuracy_metric, min_output_tokens=min_output_tokens,
                             max_output_tokens=max_output_tokens)
    from raybench.signals import interrupts

    with interrupts():
        try:
            outcome = run_compliance(test, cfg, out, executor_for=_make_executor, status=_status_line,
                                     reference_performance=reference_performance,
                                     reference_accuracy=reference_accuracy, options=opts)
        except ComplianceRefused as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt as exc:  # a run was cut short: the test is not judged
            from raybench.signals import interrupt_reason, signum_of

            kept = sorted(str(p.parent) for p in (Path(out) / "runs").glob("**/result.json"))
            typer.echo(f"raybench: {test} stopped: {interrupt_reason(exc)}; "
                       + (f"runs kept: {', '.join(kept)}" if kept else "nothing was measured"), err=True)
            raise typer.Exit(EXIT_INVALID if kept else 128 + signum_of(exc)) from None
        except (RegistryError, SettingsError, ValueError, ImportError, FileNotFoundError, RuntimeError) as exc:
            raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except Exception as exc:  # a bug: one line, the traceback in DIR/crash.log
            import traceback

            where = Path(out) / "crash.log"
            try:
                where.parent.mkdir(parents=True, exist_ok=True)
                where.write_text(traceback.format_exc())
            except OSError:
                where = Path("<not written>")
            first = str(exc).splitlines()[0] if str(exc) else ""
            typer.echo(f"raybench: internal error: {type(exc).__name__}: {first} (traceback in {where})", err=True)
            raise typer.Exit(EXIT_CRASH) from None
    for name, ok in outcome.checks.items():
        typer.echo(f"{outcome.test} {name} check pass: {ok}")
    typer.echo(f"{outcome.test} {'TEST PASS' if outcome.passed else 'TEST FAIL'}: {outcome.test_dir}")
    raise typer.Exit(EXIT_VALID if outcome.passed else EXIT_INVALID)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - handled inside runs
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
