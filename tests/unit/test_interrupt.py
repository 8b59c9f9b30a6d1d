"""Ctrl-C or SIGTERM during a run stops issuing, cancels what is in flight and still writes the run
directory (timeout, Slurm, Kubernetes and ``ray job stop`` send SIGTERM)."""

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


@pytest.mark.parametrize(("executor", "signum", "reason"), [
    ("inprocess", signal.SIGINT, "interrupted by the user (Ctrl-C)"),
    ("inprocess", signal.SIGTERM, "terminated (SIGTERM)"),
    pytest.param("ray", signal.SIGINT, "interrupted by the user (Ctrl-C)", marks=pytest.mark.ray),
    pytest.param("ray", signal.SIGTERM, "terminated (SIGTERM)", marks=pytest.mark.ray),
])
def test_interrupt_writes_partial_results(tmp_path: Path, executor: str, signum: int, reason: str) -> None:
    proc = _start(tmp_path, executor)
    head = _wait_until_running(proc, 120)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=90)
    out = "".join(head) + out
    assert proc.returncode == 1, out[-2000:]
    (run_dir,) = list(tmp_path.iterdir())
    res = json.loads((run_dir / "result.json").read_text())
    assert res["validity"] == "INVALID"
    assert any(reason in r for r in res["invalid_reasons"]), res["invalid_reasons"]
    assert res["samples_completed"] > 100
    assert (run_dir / "mlperf_log_detail.txt").exists() and (run_dir / "records.npz").exists()


def test_sigterm_before_the_run_starts_exits_143_and_writes_nothing(tmp_path: Path) -> None:
    """A SIGTERM while the plan is being built (a huge plan takes seconds) ends at once with 143."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raybench.cli", "run", "--workload", "synthetic", "--scenario", "Server",
         "--executor", "inprocess", "--set", "settings.server_target_qps=100000", "--set",
         "settings.min_duration_ms=1000000", "--out", str(tmp_path), "--quiet", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(3.0)  # importing and validating is done; the 1e8-query plan is being generated
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert out.strip().splitlines()[-1] == ("raybench: terminated (SIGTERM) before anything was measured; "
                                            "nothing was written")
    assert list(tmp_path.iterdir()) == []
