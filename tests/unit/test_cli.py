"""The CLI: exit codes (0 VALID, 1 INVALID, 2 usage/config error) and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import app
from raybench.config import ConfigError, load_run_config

runner = CliRunner()

FAST = ["--executor", "inprocess", "--quiet", "--no-report"]


def test_help_and_list() -> None:
    assert runner.invoke(app, ["--help"]).exit_code == 0
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for name in ("synthetic", "fake", "null", "Offline", "Concurrency"):
        assert name in res.output


def test_run_valid_exits_0(tmp_path: Path) -> None:
    # 2200 samples in batches of 100, one batch in flight, 10 ms each: >= 220 ms >= min duration.
    res = runner.invoke(app, ["run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Offline", "--out", str(tmp_path),
                              "--set", "sut.params={latency: {dist: constant, ms: 10}, max_batch: 100, max_inflight: 1}",
                              "--set", "settings.offline_expected_qps=10000", "--set", "settings.min_duration_ms=200",
                              "--set", "records=all", *FAST])
    assert res.exit_code == 0, res.output
    run_dir = next(tmp_path.iterdir())
    for f in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json", "result.json",
              "records.npz", "histograms.json", "config.yaml", "system.json"):
        assert (run_dir / f).exists(), f
    assert json.loads((run_dir / "result.json").read_text())["validity"] == "VALID"


def test_run_invalid_exits_1(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "--workload", "synthetic", "--sut", "null", "--scenario", "Offline", "--out", str(tmp_path),
                              "--set", "settings.offline_expected_qps=10", "--set", "settings.min_duration_ms=1000", *FAST])
    assert res.exit_code == 1
    assert "min duration not met" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "nope"], "workload.name: unknown workload 'nope'"),
        (["--workload", "synthetic", "--scenario", "Sever"], "scenario.name: must be one of"),
        (["--workload", "synthetic", "--set", "settings.server_target_qpz=3", "--scenario", "Server"], "server_target_qpz"),
        (["--workload", "synthetic", "--set", "bogus.field=1"], "config: bogus: unknown field"),
        (["--workload", "synthetic", "--set", "noequals"], "expected key.path=value"),
        (["--workload", "synthetic", "--user-conf", "/nonexistent/user.conf"], "/nonexistent/user.conf"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["run", *args, "--out", str(tmp_path), *FAST])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("raybench: error: ")
    assert message in lines[0]


def test_bad_yaml_file_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+ invalid YAML"):
        load_run_config(cfg)


def test_yaml_config_with_set_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: synthetic\nsut:\n  name: fake\n  params: {echo: true}\nscenario: server\nsettings:\n  server_target_qps: 10\n")
    rc = load_run_config(cfg, ["settings.server_target_qps=200", "sut.params.error_rate=0.5"])
    assert rc.scenario.name == "Server" and rc.settings["server_target_qps"] == 200
    assert rc.sut is not None and rc.sut.params == {"echo": True, "error_rate": 0.5}


def test_accuracy_command_rescoring(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Offline", "--mode", "AccuracyOnly",
                              "--set", "workload.params.count=50", "--out", str(tmp_path), *FAST])
    assert res.exit_code == 0, res.output
    run_dir = next(tmp_path.iterdir())
    (run_dir / "accuracy.txt").unlink()
    res = runner.invoke(app, ["accuracy", "synthetic", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / "accuracy.txt").read_text() == "exact_match=1.000000 count=50 unique_samples=50\n"


def test_console_script_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "raybench.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "raybench" in out.stdout.lower()


def test_sut_params_without_sut_name_use_the_default_sut_and_workload_timeout() -> None:
    from raybench.run import prepare_run

    cfg = load_run_config(None, ["workload=synthetic", "sut.params.error_rate=0.25", "scenario=Server"])
    prep = prepare_run(cfg)
    assert prep.sut.name == "fake" and prep.sut_params["error_rate"] == 0.25
    assert prep.query_timeout_s == 600.0
    wan = prepare_run(load_run_config(None, ["workload=wan22", "scenario=SingleStream"]))
    assert wan.query_timeout_s == 3600.0
    assert prepare_run(load_run_config(None, ["workload=wan22", "scenario=SingleStream", "query_timeout_s=5"])).query_timeout_s == 5.0
