"""`ray job submit --working-dir . -- raybench run ...` against a local head (ray start --head).

Runs last in the integration folder because ``ray stop`` stops every Ray process of the user.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_a_benchmark(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    if shutil.which("ray") is None:
        pytest.skip("ray CLI not on PATH")
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    subprocess.run(
        ["ray", "start", "--head", "--num-cpus=2", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--include-dashboard=true", "--disable-usage-stats"],
        env=env, check=True, capture_output=True, timeout=180,
    )
    try:
        out = tmp_path / "results"
        runtime_env = {"excludes": [".venv", ".venv-vllm", ".git", ".cache", "results", "*.egg-info"], "env_vars": {"RAY_AUTH_MODE": "disabled"}}
        cmd = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT),
               "--runtime-env-json", json.dumps(runtime_env), "--",
               "raybench", "run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Server",
               "--set", "settings.server_target_qps=100", "--set", "settings.min_duration_ms=6000",
               "--set", "ray.replica_num_cpus=0.5", "--set", "ray.shard_num_cpus=0.5", "--set", "lateness_p99_ms=100",
               "--out", str(out), "--quiet", "--no-report"]
        # A head started moments ago refuses jobs ("No available agent") until its job agent registers.
        until = time.monotonic() + 90
        while True:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if res.returncode == 0 or "No available agent" not in res.stderr + res.stdout or time.monotonic() > until:
                break
            time.sleep(3)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "succeeded" in (res.stdout + res.stderr)
        (run_dir,) = list(out.iterdir())
        result = json.loads((run_dir / "result.json").read_text())
        assert result["validity"] == "VALID", result["invalid_reasons"]
        assert result["shards"] == 1
        system = json.loads((run_dir / "system.json").read_text())
        assert system["number_of_nodes"] == 1
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=180)
