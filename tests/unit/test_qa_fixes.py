"""Regression tests for what a new user saw going wrong (one test per fix)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import app
from raybench.config import ConfigError, load_run_config


def test_unknown_arrival_kind_names_the_kinds_not_the_scenarios() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, ["workload=synthetic", "scenario=Server", "scenario.arrival.kind=foo"])
    assert str(exc.value) == "config: scenario.arrival.kind: must be one of poisson, constant, gamma, ramp, trace"


def test_bad_arrival_field_is_named_as_the_user_writes_it() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, ["workload=synthetic", "scenario=Server", "scenario.arrival.kind=gamma",
                               "scenario.arrival.burstiness=-1"])
    assert str(exc.value) == "config: scenario.arrival.burstiness: Input should be greater than 0"


def test_token_early_stopping_reasons_name_ttft_and_tpot(vrun) -> None:
    # 2 s at 20 q/s: too few queries for both token early-stopping estimates (100 of 459);
    # each reason names its metric instead of the same line twice.
    out = vrun("scenario=Server", "sut.params.tokens={n: 4, ttft_ms: 5, tpot_ms: 2}", "settings.server_target_qps=20",
               "settings.min_duration_ms=2000", "settings.use_token_latencies=true",
               "settings.server_ttft_latency=100000000", "settings.server_tpot_latency=10000000")
    es = [r for r in out.metrics.invalid_reasons if r.startswith("early stopping")]
    assert es == ["early stopping not met (TPOT): need 359 more queries",
                  "early stopping not met (TTFT): need 359 more queries"]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--rates", "10,abc", "raybench: error: --rates: expected a comma-separated list of numbers, got '10,abc'"),
    ("--concurrency", "1,2.5", "raybench: error: --concurrency: expected a comma-separated list of integers, got '1,2.5'"),
])
def test_sweep_bad_list_names_the_flag(tmp_path, flag: str, value: str, message: str) -> None:
    res = CliRunner().invoke(app, ["sweep", "--workload", "synthetic", flag, value, "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip() == message


def test_sweep_help_names_all_three_modes() -> None:
    res = CliRunner().invoke(app, ["sweep", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "Concurrency, target-QPS or request-rate sweep" in res.output


@pytest.mark.parametrize(("cmd", "signum", "summary", "key", "line"), [
    (["sweep", "--qps", "100,200"], signal.SIGINT, "sweep_summary.json", "points",
     "raybench: sweep stopped: interrupted by the user (Ctrl-C); 1 run(s) kept in "),
    (["search-peak", "--set", "settings.server_target_qps=100"], signal.SIGTERM, "peak_summary.json", "probes",
     "raybench: peak search stopped: terminated (SIGTERM); 1 run(s) kept in "),
])
def test_interrupt_stops_a_series_of_runs(tmp_path, cmd: list[str], signum: int, summary: str, key: str,
                                          line: str) -> None:
    # Before the fix the interrupted run was judged like any other and the next point/probe started
    # (a peak search went on for 25 probes from a 22 ms probe and exited 0 with a "peak").
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen([sys.executable, "-m", "raybench.cli", *cmd, "--workload", "synthetic",
                             "--set", "settings.min_duration_ms=60000", "--executor", "inprocess", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()  # "sweep (qps): ..." / "peak search (Server) -> ..."
    time.sleep(5.0)  # inside the first run, measuring
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    (series,) = list(tmp_path.iterdir())
    assert out.splitlines()[-1] == line + str(series)
    kept = json.loads((series / summary).read_text())[key]
    assert len(kept) == 1
    assert sorted(p.name for p in series.iterdir() if p.is_dir() and p.name != "plots") == [Path(kept[0]["run_dir"]).name]


def test_hf_source_given_a_json_file_says_what_it_reads(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    from workloads.llm.sources import read_hf_rows

    f = tmp_path / "data.json"
    f.write_text('[{"question": "hi"}]\n')
    with pytest.raises(ValueError) as exc:  # it said "not a readable json file (Not an Arrow file)"
        read_hf_rows(f, {"prompt": "question"})
    assert str(exc.value) == (f"{f}: not a readable arrow file (Not an Arrow file); "
                              "source hf reads .parquet or .arrow files")


def test_unreachable_proxy_is_named(tmp_path) -> None:
    import asyncio
    import socket

    from reference_suts.openai_endpoint.client import EndpointClient

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = EndpointClient(["http://127.0.0.1:9"], connections=1, proxy=f"http://127.0.0.1:{port}",
                            connect_timeout_s=2.0)
    with pytest.raises(ConnectionError) as exc:  # it named only the endpoint, as if that had refused
        asyncio.run(client.start())
    assert str(exc.value) == (f"cannot reach http://127.0.0.1:9 through proxy 127.0.0.1:{port}: "
                              f"Connect call failed ('127.0.0.1', {port})")


@pytest.mark.parametrize("cmd", [["report"], ["compare", "{run}"]])
def test_report_and_compare_refuse_a_directory_that_is_no_run(tmp_path, vrun, cmd: list[str]) -> None:
    # `raybench report /some/dir` wrote an empty report.html into any directory and exited 0.
    run = vrun("scenario=Offline").run_dir
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("x\n")
    args = [a.format(run=run) for a in cmd]
    res = CliRunner().invoke(app, [*args, str(other)])
    assert res.exit_code == 2
    assert res.output.strip() == (f"raybench: error: {other}: not a run directory "
                                  "(no result.json, histograms.json or sweep/peak summary)")
    assert not (other / "report.html").exists()


def test_rate_sweep_report_plots_ttft_against_the_rate(monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import warnings

    import matplotlib.axes

    from raybench.report.plots import pareto_png

    plotted: list[tuple[list[float], list[float]]] = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):  # record the TTFT panel's data
        if len(args) >= 2 and kw.get("marker") == "o":
            plotted.append((list(args[0]), list(args[1])))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    points = [{"concurrency": None, "qps_target": 10.0, "system_tps": 80.3, "tps_per_user": 287.0, "ttft_p90_ms": 15.1},
              {"concurrency": None, "qps_target": 20.0, "system_tps": 160.6, "tps_per_user": 248.2, "ttft_p90_ms": 23.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it warned "Data has no positive values" (every x was concurrency 0)
        assert pareto_png(points).startswith(b"\x89PNG")
    assert plotted == [([10.0, 20.0], [15.1, 23.0])]


def test_interrupt_stops_a_compliance_test(tmp_path) -> None:
    # Ctrl-C cut the reference performance run short, then the accuracy and audit runs still ran
    # and the test was judged (TEST FAIL) on the interrupted run.
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    out = tmp_path / "comp"
    proc = subprocess.Popen([sys.executable, "-m", "raybench.cli", "compliance", "TEST01", "--workload", "synthetic",
                             "--scenario", "Server", "--set", "settings.server_target_qps=50",
                             "--set", "settings.min_duration_ms=60000", "--executor", "inprocess", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "raybench: TEST01: reference performance run"
    time.sleep(5.0)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, rest
    assert rest.splitlines()[-1] == ("raybench: TEST01 stopped: interrupted by the user (Ctrl-C); "
                                     f"runs kept: {out / 'runs' / 'reference-performance'}")
    assert not (out / "TEST01").exists()


def test_rate_sweep_of_a_trace_replay_is_refused(tmp_path) -> None:
    # Every point replayed the same trace: "rate=10" and "rate=20" both measured 4.76 QPS.
    res = CliRunner().invoke(app, ["sweep", "--workload", "llm", "--rates", "10,20", "--set", "scenario.arrival.kind=trace",
                                   "--set", "workload.params.source=trace", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip() == ("raybench: error: --rates: scenario.arrival.kind=trace sends at the trace's own "
                                  "timestamps, so a rate does not apply (scenario.arrival.speedup scales the trace)")
    assert list(tmp_path.iterdir()) == []


def test_accuracy_of_a_performance_run_is_refused(vrun) -> None:
    # It printed exact_match=0 / ROUGE 0.0 for the empty log, exit 0, and wrote that accuracy.txt.
    run = vrun("scenario=Offline").run_dir
    (run / "accuracy.txt").unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["accuracy", "synthetic", str(run)])
    assert res.exit_code == 2
    assert res.output.strip() == (f"raybench: error: {run / 'mlperf_log_accuracy.json'}: no entries to score "
                                  "(a performance run logs none; score a --mode AccuracyOnly run)")
    assert not (run / "accuracy.txt").exists()


def test_sweep_of_a_token_free_workload_plots_without_warnings(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    import warnings

    from raybench.sweep import PointResult, plot_sweep

    pt = PointResult(concurrency=None, qps_target=50.0, run_dir=str(tmp_path), validity="VALID", invalid_reasons=[],
                     n_completed=3000, n_failed=0, n_warmup=0, output_tokens=0, elapsed_s=60.0, system_tps=0.0,
                     tps_per_user=None, tpot_p90_ms=None, ttft_p90_ms=None, qps=50.49)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" on the console
        files = plot_sweep(tmp_path, "qps", [pt])
    assert tmp_path / "pareto.png" in files


@pytest.mark.parametrize("cmd", [["sweep", "--qps", "10"], ["search-peak"]])
def test_series_out_that_is_a_file_is_one_line(tmp_path, cmd: list[str]) -> None:
    # It was a NotADirectoryError traceback with exit 1.
    f = tmp_path / "file.json"
    f.write_text("{}\n")
    res = CliRunner().invoke(app, [*cmd, "--workload", "synthetic", "--executor", "inprocess", "--out", str(f)])
    assert res.exit_code == 2
    assert res.output.strip() == f"raybench: error: --out: {f} is a file, not a directory"


def test_export_to_a_missing_directory_is_one_line(tmp_path, vrun) -> None:
    # It was a FileNotFoundError traceback with exit 1.
    run = vrun("scenario=Offline", "records=all").run_dir
    dest = tmp_path / "no" / "such" / "requests.jsonl"
    res = CliRunner().invoke(app, ["export", str(run), "--out", str(dest)])
    assert res.exit_code == 2
    assert res.output.strip() == f"raybench: error: --out: cannot write {dest}: No such file or directory"


def test_peak_report_of_a_search_stopped_before_any_probe_has_no_warning() -> None:
    pytest.importorskip("matplotlib")
    import warnings

    from raybench.report.peak import peak_png

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" after Ctrl-C
        assert peak_png({"scenario": "Server", "field": "target_qps", "peak": None, "probes": []}).startswith(b"\x89PNG")
