"""Reports: every section renders, the numbers on the page are result.json's, compare, sweeps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("matplotlib")

from raybench.cli import app  # noqa: E402
from raybench.core.endpoints import ParetoPoint, pareto_frontier  # noqa: E402
from raybench.report import write_report  # noqa: E402
from raybench.report.compare import COMPARE_ROWS, compare_runs  # noqa: E402
from raybench.report.html import SECTIONS, SUMMARY_KEYS, iter_cells  # noqa: E402
from raybench.report.load import load_run  # noqa: E402


def virtual_run(tmp_path: Path, *sets: str, shards: int = 1) -> Any:
    """A fake-SUT run in-process on virtual time (as tests/conftest.py's ``virtual_run``)."""
    from raybench.config import load_run_config
    from raybench.core.clock import VirtualClock
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", f"out={tmp_path}", *sets])
    return run_benchmark(cfg, InProcessExecutor(VirtualClock(), shards=shards))


TOKENS = "sut.params.tokens={n: [4, 12], ttft_ms: 20, tpot_ms: 5}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    # Token workload, accuracy mode (accuracy.txt + result["accuracy"]), two shards.
    tok = virtual_run(base / "tok", "scenario=Offline", "mode=AccuracyOnly", TOKENS, "settings.use_token_latencies=true", shards=2)
    # A Server run whose SUT is slower than the latency bound: INVALID with reasons.
    bad = virtual_run(base / "bad", "scenario=Server", "sut.params={latency: {dist: constant, ms: 80}}",
                      "settings.server_target_qps=50", "settings.min_duration_ms=2000", "settings.server_target_latency_ns=50000000")
    return {"tok": tok.run_dir, "bad": bad.run_dir}


def _cells(page: str) -> dict[str, object]:
    return dict(iter_cells(page))


def test_report_has_every_section_and_plot(runs: dict[str, Path]) -> None:
    out = write_report(runs["tok"])
    page = out.read_text()
    assert out == runs["tok"] / "report.html"
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" in page, sid
    for img in ("latency", "timeline", "shards", "ttft", "tpot"):
        assert f'id="img-{img}" alt="{img}" src="data:image/png;base64,' in page, img
        png = (runs["tok"] / "plots" / f"{img}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "section failed" not in page
    assert "not a sweep" in page  # the Pareto section exists and says why it is empty
    assert "exact_match=1.000000 count=1024" in page  # accuracy.txt next to performance


def test_report_numbers_equal_result_json(runs: dict[str, Path]) -> None:
    page = write_report(runs["tok"]).read_text()
    result = json.loads((runs["tok"] / "result.json").read_text())
    cells = _cells(page)
    for key in SUMMARY_KEYS:
        assert cells[f"m-{key}"] == result[key], key
    for block in ("latency_ns", "ttft_ns", "tpot_ns", "lateness_ns"):
        for p, v in result[block].items():
            assert cells[f"m-{block}.{p}"] == v, (block, p)
    assert cells["m-tpot_ns.p50"] == 5_000_000  # the fake SUT streams a token every 5 ms
    for s in result["per_shard"]:
        k = s["shard"]
        for col in ("lateness_p99_ns", "latency_p99_ns", "samples_completed", "queries_issued"):
            assert cells[f"shard-{k}-{col}"] == s[col]
    assert sum(cells[f"shard-{k}-samples_completed"] for k in (0, 1)) == result["samples_completed"] == 1024
    assert cells["acc-exact_match"] == 1.0 and cells["accuracy-passed"] is True
    assert cells["validity"] == "VALID"
    system = json.loads((runs["tok"] / "system.json").read_text())
    assert cells["sys-number_of_nodes"] == system["number_of_nodes"] == 1


def test_invalid_run_lists_every_reason(runs: dict[str, Path]) -> None:
    page = write_report(runs["bad"]).read_text()
    result = json.loads((runs["bad"] / "result.json").read_text())
    assert result["validity"] == "INVALID" and result["invalid_reasons"]
    assert _cells(page)["validity"] == "INVALID"
    ul = page[page.index('<ul id="invalid-reasons">'):]
    ul = ul[: ul.index("</ul>")]
    assert ul.count("<li>") == len(result["invalid_reasons"])
    assert "not a token workload" in page


def test_partial_run_dir_still_renders(runs: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "partial"
    d.mkdir()
    shutil.copy(runs["bad"] / "histograms.json", d / "histograms.json")
    page = write_report(d).read_text()
    assert "result.json: missing" in page and "timeline.json: missing" in page
    assert 'id="img-latency"' in page  # what exists is still drawn
    (d / "timeline.json").write_text("[{")  # half-written: unreadable, reported, no exception
    assert "timeline.json: unreadable" in write_report(d).read_text()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        write_report(tmp_path / "nope")


def test_sweep_report_marks_the_pareto_frontier(tmp_path: Path) -> None:
    pts = [
        {"concurrency": 1, "system_tps": 100.0, "tps_per_user": 90.0, "ttft_p90_ms": 20.0},
        {"concurrency": 4, "system_tps": 350.0, "tps_per_user": 80.0, "ttft_p90_ms": 25.0},
        {"concurrency": 8, "system_tps": 300.0, "tps_per_user": 60.0, "ttft_p90_ms": 40.0},  # dominated by c=4
        {"concurrency": 16, "system_tps": 900.0, "tps_per_user": 50.0, "ttft_p90_ms": 80.0},
        {"concurrency": 32, "system_tps": 950.0, "tps_per_user": None, "ttft_p90_ms": None},  # TPOT unknown: off the chart
    ]
    (tmp_path / "sweep_summary.json").write_text(json.dumps({"points": pts}))
    page = write_report(tmp_path).read_text()
    assert 'id="img-pareto"' in page and "problems" not in page  # a sweep dir needs no result.json
    cells = _cells(page)
    assert [cells[f"sweep-{i}-system_tps"] for i in range(5)] == [100.0, 350.0, 300.0, 900.0, 950.0]
    assert cells["sweep-4-tps_per_user"] is None
    front = {p.concurrency for p in pareto_frontier([ParetoPoint(p["concurrency"], p["system_tps"], p["tps_per_user"]) for p in pts[:4]])}
    assert front == {1, 4, 16}
    table = page[page.index("id='sweep-table'"):]
    rows = table[: table.index("</table>")].split("<tr>")[2:]
    assert ["<td>yes</td>" in r for r in rows] == [True, True, False, True, False]


def test_compare_table_and_plots(runs: dict[str, Path], tmp_path: Path) -> None:
    loaded, rows, pngs = compare_runs([runs["tok"], runs["bad"]], tmp_path / "cmp")
    table = {r[0]: r[1:] for r in rows}
    assert len(rows) == len(COMPARE_ROWS)
    assert table["validity"] == ["VALID", "INVALID"]
    assert table["scenario"] == ["Offline", "Server"]
    tok = json.loads((runs["tok"] / "result.json").read_text())
    assert table["TTFT p90 (ms)"] == [f"{tok['ttft_ns']['p90'] / 1e6:.3f}", "-"]
    bad = json.loads((runs["bad"] / "result.json").read_text())
    assert table["latency p99 (ms)"][1] == f"{bad['latency_ns']['p99'] / 1e6:.3f}"
    assert table["invalid reasons"] == ["0", str(len(bad["invalid_reasons"]))]
    assert table["accuracy"][0] == "exact_match=1, count=1024"
    assert sorted(p.name for p in pngs) == ["latency_cdf.png", "lateness_cdf.png", "tpot_cdf.png", "ttft_cdf.png"]
    assert loaded[0].hist("ttft").count == 1024


def test_cli_report_and_compare(runs: dict[str, Path], tmp_path: Path) -> None:
    cli = CliRunner()
    res = cli.invoke(app, ["report", str(runs["bad"])])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(runs["bad"] / "report.html")
    res = cli.invoke(app, ["compare", str(runs["tok"]), str(runs["bad"]), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "INVALID" in res.output and "latency p99 (ms)" in res.output
    assert (tmp_path / "c" / "latency_cdf.png").exists()
    res = cli.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_load_run_rebuilds_histograms(runs: dict[str, Path]) -> None:
    run = load_run(runs["tok"])
    hist = json.loads((runs["tok"] / "histograms.json").read_text())
    assert run.hist("latency").count == hist["latency"]["histogram"]["count"] == 1024
    assert run.hist("latency").percentile(0.99) == hist["latency"]["percentiles_ns"]["p99"]


# ---------------------------------------------------------------------------------- system.json
_CPUINFO = "".join(
    f"processor\t: {i}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: {i // 4}\ncpu cores\t: 2\n\n" for i in range(8)
)


def test_cpu_facts_from_cpuinfo() -> None:
    from raybench.report.system import cpu_facts

    assert cpu_facts(_CPUINFO) == {"model": "Intel(R) Xeon(R) Platinum 8480+", "sockets": 2, "cores_per_socket": 2, "logical_cpus": 8}


def test_gpu_facts_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raybench.report.system import describe_host, gpu_facts

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nfor i in 1 2; do echo 'NVIDIA H100 80GB HBM3, 81559, 550.54.15'; done\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    assert gpu_facts() == [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "550.54.15"}] * 2
    host = describe_host()
    assert (host["accelerators_per_node"], host["accelerator_model_name"], host["accelerator_memory_capacity"]) == (2, "NVIDIA H100 80GB HBM3", "80 GB")


def test_system_json_has_mlperf_fields(runs: dict[str, Path]) -> None:
    from importlib.metadata import version

    s = json.loads((runs["tok"] / "system.json").read_text())
    for key in ("system_name", "number_of_nodes", "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
                "host_memory_capacity", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
                "framework", "operating_system", "other_software_stack"):
        assert key in s, key
    assert s["number_of_nodes"] == 1
    assert s["software"]["numpy"] == version("numpy") and s["software"]["pydantic"] == version("pydantic")
    assert f"numpy {version('numpy')}" in s["other_software_stack"]
    if shutil.which("nvidia-smi") is None:
        assert (s["accelerators_per_node"], s["accelerator_model_name"]) == (0, "N/A")
    assert s["sut"]["name"] == "fake" and s["sut"]["params"]["echo"] is True and s["sut"]["params"]["max_batch"] == 16
