"""Ctrl-C during a run stops issuing, cancels what is in flight and still writes the run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _start(tmp_path: Path, executor: str) -> subprocess.Popen[str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen(
        [sys.executable, "-m", "raybench.cli", "run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Server",
         "--set", "settings.server_target_qps=100", "--set", "settings.min_duration_ms=60000", "--executor", executor,
         "--set", "ray.shard_num_cpus=0.5", "--set", "ray.replica_num_cpus=0.5",
         "--set", "records=all", "--out", str(tmp_path), "--quiet", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _wait_until_running(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """Read output until the CLI says the run is issuing (the first progress snapshot)."""
    lines: list[str] = []
    end = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("raybench: running"):
            time.sleep(2.0)  # let it measure a little
            return lines
    raise AssertionError("run never started:\n" + "".join(lines)[-2000:])


@pytest.mark.parametrize("executor", ["inprocess", pytest.param("ray", marks=pytest.mark.ray)])
def test_ctrl_c_writes_partial_results(tmp_path: Path, executor: str) -> None:
    proc = _start(tmp_path, executor)
    head = _wait_until_running(proc, 120)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    out = "".join(head) + out
    assert proc.returncode == 1, out[-2000:]
    (run_dir,) = list(tmp_path.iterdir())
    res = json.loads((run_dir / "result.json").read_text())
    assert res["validity"] == "INVALID"
    assert any("interrupted by the user (Ctrl-C)" in r for r in res["invalid_reasons"]), res["invalid_reasons"]
    assert res["samples_completed"] > 100
    assert (run_dir / "mlperf_log_detail.txt").exists() and (run_dir / "records.npz").exists()
