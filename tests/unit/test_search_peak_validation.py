"""``raybench search-peak`` checks its own options before it announces (or creates) a search
directory: a bad one is one line naming the option, exit 2, nothing printed before it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import app

BASE = ["search-peak", "--workload", "synthetic", "--executor", "inprocess"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--criterion", "foo"], "--criterion: expected 'constraints' or 'valid', got 'foo'"),
    (["--max-probes", "0"], "--max-probes: must be >= 1, got 0"),
    (["--start", "-5"], "--start: need a positive target_qps, got -5"),
    (["--start", "inf"], "--start: need a positive target_qps, got inf"),
    (["--scenario", "Concurrency", "--start", "2.5"], "--start: need a positive integer target_concurrency, got 2.5"),
    (["--set", "mode=AccuracyOnly"], "mode: peak search makes performance runs, not AccuracyOnly"),
])
def test_bad_options_fail_before_anything_is_printed(tmp_path: Path, extra: list[str], message: str) -> None:
    res = CliRunner().invoke(app, [*BASE, "--out", str(tmp_path / "results"), *extra])
    assert res.exit_code == 2, res.output
    assert res.output == f"raybench: error: {message}\n"
    assert not (tmp_path / "results").exists()
