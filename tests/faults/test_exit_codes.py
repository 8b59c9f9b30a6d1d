"""Exit codes and file modes: a crash is not an INVALID run; result files honour the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import EXIT_CRASH, app

runner = CliRunner()
FAST = ["--workload", "synthetic", "--executor", "inprocess", "--quiet", "--no-report", "--scenario", "Offline",
        "--set", "settings.min_duration_ms=100", "--set", "settings.offline_expected_qps=2000"]


def test_internal_error_exits_70_with_one_line_and_a_crash_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import raybench.results

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(raybench.results, "compute_metrics", broken)
    res = runner.invoke(app, ["run", *FAST, "--out", str(tmp_path)])
    assert res.exit_code == EXIT_CRASH == 70
    (run_dir,) = tmp_path.iterdir()
    line = res.output.strip()
    assert line == f"raybench: internal error: ZeroDivisionError: division by zero (traceback in {run_dir / 'crash.log'})"
    assert "Traceback (most recent call last)" in (run_dir / "crash.log").read_text()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_result_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        import importlib

        import raybench.core.logs.atomic as atomic

        importlib.reload(atomic)  # the umask is read once, at import
        atomic.atomic_write_text(tmp_path / "result.json", "{}")
    finally:
        os.umask(old)
        importlib.reload(atomic)
    mode = stat.S_IMODE((tmp_path / "result.json").stat().st_mode)
    assert mode == 0o666 & ~umask
