"""The ``raybench`` command line: a thin shell over ``raybench.core`` (heavy imports inside commands).

Exit codes: 0 = the run is VALID, 1 = INVALID, 2 = a usage or config error (one line naming the
bad field or file).
"""

from __future__ import annotations

import os
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

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"raybench: error: {msg}", err=True)
    return typer.Exit(EXIT_USAGE)


@app.command("list")
def list_cmd() -> None:
    """List workloads, SUTs and scenarios (works with no optional dependency installed)."""
    from rich.console import Console
    from rich.table import Table

    from raybench.core.config import SCENARIO_NAMES
    from raybench.registry import list_suts, list_workloads

    con = Console()
    t = Table(title="Workloads", show_lines=False)
    for col in ("name", "scenarios", "default SUT", "MLPerf model", "description"):
        t.add_column(col)
    for name, w in list_workloads().items():
        t.add_row(name, ", ".join(w.scenarios), w.default_sut, w.mlperf_model or "-", w.description)
    con.print(t)
    t = Table(title="SUTs")
    for col in ("name", "extra", "description"):
        t.add_column(col)
    for name, s in list_suts().items():
        t.add_row(name, s.extra or "-", s.description)
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
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
) -> None:
    """Run one benchmark; writes MLPerf-compatible logs and result.json into a run directory."""
    from raybench.core.config import ConfigError, load_run_config

    overrides: list[str] = []
    for key, val in (("workload", workload), ("sut", sut), ("scenario", scenario), ("mode", mode), ("out", out),
                     ("executor", executor), ("user_conf", user_conf), ("mlperf_conf", mlperf_conf)):
        if val is not None:
            overrides.append(f"{key}={val}")
    if shards is not None:
        overrides.append(f"shards={shards}")
    if address is not None:
        overrides.append(f"ray.address={address}")
    if no_report:
        overrides.append("report=false")
    try:
        cfg = load_run_config(config, overrides + list(set_))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if cfg.executor == "ray" and cfg.ray.address is None and os.environ.get("RAY_ADDRESS"):
        cfg.ray.address = os.environ["RAY_ADDRESS"]
    code = _run(cfg, quiet)
    raise typer.Exit(code)


def _run(cfg: Any, quiet: bool) -> int:
    from rich.console import Console

    from raybench.core.runner import run_benchmark
    from raybench.registry import RegistryError

    con = Console(stderr=True)
    if cfg.scenario in ("SingleStream", "MultiStream") and cfg.shards and cfg.shards > 1:
        con.print(f"[yellow]{cfg.scenario} is serial by definition: running 1 shard instead of {cfg.shards}.[/yellow]")
        cfg.shards = 1
    try:
        executor = _make_executor(cfg)
    except (ValueError, ImportError) as exc:
        raise _fail(str(exc)) from None
    progress = None
    live = None
    if not quiet:
        from raybench.progress import LiveProgress

        live = LiveProgress(con, cfg)
        progress = live.update
    try:
        if live:
            live.start()
        outcome = run_benchmark(cfg, executor, progress)
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    finally:
        if live:
            live.stop()
        close = getattr(executor, "close", None)
        if callable(close):
            close()
    if cfg.report:
        try:
            from raybench.report import write_report

            write_report(outcome.run_dir)
        except ImportError:
            pass
        except Exception as exc:  # the report is a convenience; never lose the run for it
            con.print(f"[yellow]report not written: {type(exc).__name__}: {exc}[/yellow]")
    from raybench.progress import print_summary

    print_summary(Console(), outcome)
    return EXIT_VALID if outcome.metrics.validity == "VALID" else EXIT_INVALID


def _make_executor(cfg: Any) -> Any:
    if cfg.executor == "inprocess":
        from raybench.core.runner import InProcessExecutor

        return InProcessExecutor(shards=cfg.shards or 1)
    from raybench.ray.executor import RayExecutor

    return RayExecutor(cfg.ray)


@app.command("accuracy")
def accuracy_cmd(
    workload: str = typer.Argument(..., help="Workload name."),
    run_dir: Path = typer.Argument(..., help="Run directory holding mlperf_log_accuracy.json."),
    set_: list[str] = typer.Option([], "--set", help="Workload parameter: key=value (repeatable)."),
) -> None:
    """Score mlperf_log_accuracy.json of a run and write accuracy.txt."""
    import yaml

    from raybench.core.config import ConfigError, parse_set, set_path
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
        library = make_library(spec, params)
        res = load_object(spec.accuracy)(entries, library, params)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    atomic_write_text(run_dir / "accuracy.txt", res.accuracy_txt if res.accuracy_txt.endswith("\n") else res.accuracy_txt + "\n")
    typer.echo(res.accuracy_txt.rstrip())
    if res.passed is not None:
        typer.echo("PASS" if res.passed else "FAIL")
    raise typer.Exit(0 if res.passed in (True, None) else 1)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - handled inside runs
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
