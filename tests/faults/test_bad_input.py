"""Bad configuration is refused in one line naming the field or file, before anything runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import app

runner = CliRunner()
BASE = ["run", "--workload", "synthetic", "--executor", "inprocess", "--quiet", "--no-report"]


def _chat_file(tmp_path: Path) -> str:
    p = tmp_path / "chat.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}\n'
                 '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}\n')
    return str(p)


def _binary_conf(tmp_path: Path) -> str:
    p = tmp_path / "user.conf"
    p.write_bytes(b"\xaf\x00\x01 binary")
    return str(p)


CASES = [
    (["--set", "query_timeout_s=nan"], "config: query_timeout_s: Input should be a finite number"),
    (["--set", "query_timeout_s=-1"], "config: query_timeout_s: Input should be greater than 0"),
    (["--set", "query_timeout_s=0"], "config: query_timeout_s: Input should be greater than 0"),
    (["--set", "deadline_grace_s=inf"], "config: deadline_grace_s: Input should be a finite number"),
    (["--set", "deadline_grace_s=-5"], "config: deadline_grace_s: Input should be greater than or equal to 0"),
    (["--set", "max_error_rate=nan"], "config: max_error_rate: Input should be a finite number"),
    (["--set", "max_error_rate=2"], "config: max_error_rate: Input should be less than or equal to 1"),
    (["--set", "lateness_p99_ms=nan"], "config: lateness_p99_ms: Input should be a finite number"),
    (["--set", "lateness_p99_ms=0"], "config: lateness_p99_ms: Input should be greater than 0"),
    (["--scenario", "Server", "--set", "settings.server_target_qps=1e12"],
     "settings.server_target_qps: the plan would hold about 5e+12 samples (limit max_plan_queries=200000000)"),
    (["--scenario", "Server", "--set", "settings.server_target_qps=1e-6"],
     "settings.server_target_qps: the plan would take about 1e+08 s to issue (limit max_planned_duration_s=604800)"),
    (["--scenario", "Offline", "--set", "settings.offline_expected_qps=1e12"],
     "settings.offline_expected_qps: the plan would hold about 2.2e+12 samples"),
    (["--set", "workload.params.cont=5"], "workload.params.cont: unknown field"),
    (["--set", "sut.params.latency={dist: foo}"],
     "sut.params.latency.dist: Input should be 'constant', 'uniform', 'lognormal' or 'exponential'"),
    (["--scenario", "Server", "--set", "scenario.target_concurrency=4"],
     "config: scenario.target_concurrency: unknown field for scenario Server"),
    (["--user-conf", "{binary}"], "is not a text conf file (byte 0xaf at offset 0 is not UTF-8)"),
    (["--out", "{file}"], "out: cannot create or write"),
    (["--workload", "chat", "--sut", "fake", "--set", "workload.params.path={chat}"],
     "chat.jsonl:2: 'max_tokens' must be a positive integer, got 'ten'"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[c[1][:40] for c in CASES])
def test_refused_in_one_line_before_anything_runs(tmp_path: Path, args: list[str], needle: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    subs = {"{binary}": _binary_conf(tmp_path), "{file}": str(a_file), "{chat}": _chat_file(tmp_path)}
    for key, value in subs.items():
        args = [a.replace(key, value) for a in args]
    out_dir = tmp_path / "results"
    start = time.monotonic()
    res = runner.invoke(app, [*BASE, "--out", str(out_dir), *args])
    took = time.monotonic() - start
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("raybench: error: "), res.output
    assert needle in lines[0]
    assert took < 10
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing was run, nothing written


def test_sut_constructor_that_raises_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reference_suts.fake.sut as fake

    def boom(self, params):
        raise RuntimeError("no GPU left\nsecond line")

    monkeypatch.setattr(fake.FakeSUT, "__init__", boom)
    res = runner.invoke(app, [*BASE, "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == "raybench: error: sut fake: its constructor raised RuntimeError: no GPU left"
