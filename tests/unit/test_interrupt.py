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
         "--out", str(tmp_path), "--quiet", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _wait_for_records(proc: subprocess.Popen[str], seconds: float) -> None:
    time.sleep(seconds)
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""


@pytest.mark.parametrize("executor", ["inprocess", pytest.param("ray", marks=pytest.mark.ray)])
def test_ctrl_c_writes_partial_results(tmp_path: Path, executor: str) -> None:
    proc = _start(tmp_path, executor)
    _wait_for_records(proc, 4.0 if executor == "inprocess" else 14.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 1, out[-2000:]
    (run_dir,) = list(tmp_path.iterdir())
    res = json.loads((run_dir / "result.json").read_text())
    assert res["validity"] == "INVALID"
    assert any("interrupted by the user (Ctrl-C)" in r for r in res["invalid_reasons"]), res["invalid_reasons"]
    assert res["samples_completed"] > 50
    assert (run_dir / "mlperf_log_detail.txt").exists() and (run_dir / "records.npz").exists()
