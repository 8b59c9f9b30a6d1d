"""report.html rendered by headless Chromium is a real page (not blank). Needs /usr/bin/chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def virtual_run(tmp_path: Path, *sets: str, shards: int = 1) -> Any:
    """A fake-SUT run in-process on virtual time (as tests/conftest.py's ``virtual_run``)."""
    from raybench.config import load_run_config
    from raybench.core.clock import VirtualClock
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", f"out={tmp_path}", *sets])
    return run_benchmark(cfg, InProcessExecutor(VirtualClock(), shards=shards))


pytestmark = pytest.mark.slow

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def test_report_screenshot_is_not_blank(tmp_path: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    image = pytest.importorskip("matplotlib.image")
    from raybench.report import write_report

    out = virtual_run(tmp_path / "runs", "scenario=Server", "settings.min_duration_ms=2000", shards=2)
    page = write_report(out.run_dir)
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.exists(), "Chromium wrote no screenshot"
    px = image.imread(str(shot))[..., :3]
    assert px.shape[:2] == (1600, 1200)
    non_white = (px < 0.95).any(axis=-1).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of the page is not white"
    # The verdict badge is drawn in its colour (VALID #2e7d32, INVALID #c62828): tables, text and
    # plots contain neither, so a page that failed to lay out would not have it.
    rgb = (0x2E, 0x7D, 0x32) if out.metrics.validity == "VALID" else (0xC6, 0x28, 0x28)
    badge = np.all(np.abs(px * 255 - np.array(rgb)) < 8, axis=-1).sum()
    assert badge > 500, (out.metrics.validity, int(badge))
