"""Ctrl-C / SIGTERM at any point of start-up: one line saying what was stopped, no Ray left running.

Each case runs ``raybench run`` in its own session (process group), with the embedded Ray held to
2 CPUs (``ray.init_kwargs.num_cpus=2``) so that placement waits the same way on any machine.
Ctrl-C is sent to the whole group, as a terminal does; SIGTERM to raybench only, as ``kill`` does.
Leftovers are Ray processes of that run: in its process group, or naming its session directory
(``session_<date>_<driver pid>``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ray

TWO_CPUS = ("--set", "ray.init_kwargs.num_cpus=2")


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "raybench.cli", "run", "--workload", "synthetic", "--scenario", "Server",
         "--out", str(tmp_path), "--quiet", "--no-report", *TWO_CPUS, *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> list[str]:
    lines: list[str] = []
    end = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    proc.kill()
    raise AssertionError(f"never saw {marker!r}:\n" + "\n".join(lines)[-3000:])


def _finish(proc: subprocess.Popen[str], head: list[str], sig: int, timeout: float = 60) -> tuple[int, list[str], float]:
    t = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, head + out.splitlines(), time.monotonic() - t


def _ray_leftovers(pid: int, grace_s: float = 10.0) -> list[str]:
    """Processes of the run's Ray still alive after ``grace_s``: in its group or naming its session."""
    end = time.monotonic() + grace_s
    while True:
        left = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != pid and (os.getpgid(p.pid) == pid or re.search(rf"session_[\d_-]+_{pid}\b", cmd)):
                    left.append(f"{p.pid} {cmd[:120]}")
            except (psutil.Error, ProcessLookupError):
                continue
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.5)


def _last_raybench_line(lines: list[str]) -> str:
    return [ln for ln in lines if ln.startswith("raybench: ")][-1]


def test_ctrl_c_while_ray_starts(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--sut", "null")
    head = _read_until(proc, "raybench: starting an embedded local Ray")
    time.sleep(0.5)
    code, lines, took = _finish(proc, head, signal.SIGINT)
    text = "\n".join(lines)
    assert code == 130, text[-3000:]
    assert "Traceback" not in text and "Segmentation" not in text, text[-3000:]
    last = _last_raybench_line(lines)
    assert re.fullmatch(r"raybench: interrupted by the user \(Ctrl-C\) while .+: .+", last), last
    if "Ctrl-C received while starting the embedded Ray" in text:  # deferred: acted on once Ray was up
        assert last == ("raybench: interrupted by the user (Ctrl-C) while starting the embedded Ray: "
                        "shut down the embedded Ray"), text
    assert _ray_leftovers(proc.pid) == []


@pytest.mark.parametrize(("sig", "code", "verb"), [(signal.SIGINT, 130, "interrupted by the user (Ctrl-C)"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_signal_while_waiting_for_placement(tmp_path: Path, sig: int, code: int, verb: str) -> None:
    # 1 replica + 3 shards at 1 CPU each on 2 CPUs: the replica and one shard run, two shards wait.
    proc = _start(tmp_path, "--sut", "fake", "--shards", "3", "--set", "ray.shard_num_cpus=1",
                  "--set", "ray.replica_num_cpus=1")
    head = _read_until(proc, "waiting for {CPU: 1}")
    waiting = head[-1]
    assert re.match(r"raybench: shards \d, \d: waiting for \{CPU: 1\} each on node \w+ \(ray.shard_num_cpus\); "
                    r"cluster has \{CPU: 0\} free of \{CPU: 2\}; this run asks for \{CPU: 4\} in all", waiting), waiting
    code_got, lines, took = _finish(proc, head, sig)
    assert code_got == code, "\n".join(lines)[-3000:]
    assert _last_raybench_line(lines) == (f"raybench: {verb} while waiting for 2 shards to be placed: stopped 4 actors, "
                                          f"removed 0 placement groups, shut down the embedded Ray")
    assert took < 30
    assert _ray_leftovers(proc.pid) == []


def test_too_small_embedded_ray_runs_with_fractional_cpus(tmp_path: Path) -> None:
    """The bug report's command: more shards than free CPUs on the embedded Ray now runs and says how."""
    proc = _start(tmp_path, "--sut", "null", "--shards", "3", "--set", "settings.min_duration_ms=1000")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode in (0, 1), out[-3000:]
    assert ("raybench: the embedded Ray has 2 CPUs (1 for the SUT replicas): 3 shards get 0.33 CPU each instead "
            "of 1 (set ray.shard_num_cpus to insist)") in out.splitlines(), out[-3000:]
    assert "waiting for" not in out
    assert len(list(tmp_path.iterdir())) == 1
    assert _ray_leftovers(proc.pid) == []
