"""Token metrics in the kernel: input tokens, finish reasons and SLO goodput folded exactly per
shard and merged; the sweep's result_summary fields; --slo and export on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raybench.cli import app
from raybench.config import ConfigError, load_run_config, parse_slo
from raybench.core.aggregate import RunStats, merge_stats
from raybench.core.metrics import token_metrics
from raybench.core.records import COLUMNS
from raybench.sweep import _merged_records, point_metrics

MS = 1_000_000


def cols(**given: list[int]) -> dict[str, np.ndarray]:
    n = len(next(iter(given.values())))
    out = {k: np.zeros(n, dtype=t) for k, t in COLUMNS.items()}
    for k, v in given.items():
        out[k] = np.asarray(v, dtype=COLUMNS[k])
    return out


def shard(slo: dict[str, int], finish_names: list[str], **given: list[int]) -> RunStats:
    c = cols(**given)
    st = RunStats(slo=slo)
    n = c["intended_ns"].shape[0]
    st.fold(c, list(range(n)), [1] * n, ["boom"], finish_names=finish_names)
    return st


def test_fold_counts_slo_goodput_inputs_and_finish_reasons_exactly() -> None:
    slo = {"ttft": 50 * MS, "tpot": 20 * MS, "e2el": 200 * MS}
    # Shard 0: met; TTFT 60 > 50; TPOT (100-10)/2 = 45 > 20; one token, latency 30 (no TPOT): met.
    s0 = shard(slo, ["stop", "length"], intended_ns=[0, 0, 0, 0], first_token_ns=[10 * MS, 60 * MS, 10 * MS, 30 * MS],
               completed_ns=[40 * MS, 90 * MS, 100 * MS, 30 * MS], n_tokens=[4, 4, 3, 1], n_input=[7, 8, 9, 10],
               finish=[1, 2, 2, 1])
    # Shard 1 (its own finish codes): latency 250 > 200; non-streamed (no TTFT): misses the TTFT
    # SLO; an error (not counted anywhere but errors); met at exactly the bounds (<=).
    s1 = shard(slo, ["length", "stop"], intended_ns=[0, 0, 0, 0], first_token_ns=[10 * MS, 0, 0, 50 * MS],
               completed_ns=[250 * MS, 20 * MS, 5 * MS, 90 * MS], n_tokens=[2, 5, 0, 3], n_input=[1, 2, 3, 4],
               finish=[1, 2, 0, 2], error=[0, 0, 1, 0])
    assert (s0.slo_met, s0.slo_met_tokens) == (2, 5)
    assert (s1.slo_met, s1.slo_met_tokens) == (1, 3)
    st = merge_stats([s0, s1])
    assert (st.slo_met, st.slo_met_tokens, st.samples_ok, st.samples_failed) == (3, 8, 7, 1)
    assert st.finish_reasons == {"stop": 4, "length": 3}
    assert st.total_input_tokens == 7 + 8 + 9 + 10 + 1 + 2 + 4 and st.input_tokens.count == 7
    assert st.total_tokens == 22 and st.latency_sum_ns == (40 + 90 + 100 + 30 + 250 + 20 + 90) * MS
    m = token_metrics(st, samples_per_second=70.0, tokens_per_second=220.0)
    assert m["goodput"]["requests_per_second"] == pytest.approx(30.0)
    assert m["goodput"]["output_tokens_per_second"] == pytest.approx(80.0)
    assert m["e2e_interactivity"] == pytest.approx(22 / 0.62)
    assert m["finish_reasons"] == {"stop": 4, "length": 3}
    assert m["input_tokens"]["min"] == 1 and m["input_tokens"]["max"] == 10
    assert RunStats().slo_met == 0 and token_metrics(RunStats(), 0.0, None)["goodput"] == {}


def test_sweep_summary_fills_input_lengths_and_finish_reasons(tmp_path: Path) -> None:
    arrays = {}
    for k, (fin_names, codes, isl) in enumerate(((["stop", "length"], [1, 2, 2], [5, 6, 7]),
                                                 (["length"], [1, 0], [8, 0]))):
        c = cols(intended_ns=[0] * len(codes), completed_ns=[10 * MS] * len(codes), n_tokens=[3] * len(codes),
                 finish=codes, n_input=isl)
        for name, v in c.items():
            arrays[f"shard{k}/{name}"] = v
        arrays[f"shard{k}/finish_reasons"] = np.array(fin_names)
        arrays[f"shard{k}/errors"] = np.array([], dtype=str)
    np.savez(tmp_path / "records.npz", **arrays)
    rec = _merged_records(tmp_path)
    assert rec["finish_reason"].tolist() == ["stop", "length", "length", "length", ""]
    _, summary = point_metrics(rec, concurrency=1, qps_target=None)
    assert summary["finish_reason_counts"] == {"length": 3, "stop": 1}
    isl = summary["input_sequence_lengths"]
    assert (isl["total"], isl["min"], isl["max"]) == (26, 5, 8)  # the unknown (0) is left out


def test_sweep_point_goodput_over_the_kept_window() -> None:
    # Issued at 0, 100, 200, 300 ms; the first is warm-up. TTFTs 10, 80, 10, 10 ms; 3 tokens each.
    rec = {"intended_ns": np.array([0, 100, 200, 300]) * MS, "first_token_ns": np.array([10, 180, 210, 310]) * MS,
           "completed_ns": np.array([50, 190, 250, 400]) * MS, "n_tokens": np.array([3, 3, 3, 3]),
           "error": np.zeros(4, np.int32)}
    m, _ = point_metrics(rec, concurrency=1, qps_target=None, warmup_queries=1,
                         slo_ns={"ttft": 50 * MS, "tpot": 30 * MS})
    g = m["goodput"]
    # Kept: 100 (TTFT 80: misses), 200 (TPOT 15: met), 300 (TPOT 45: misses); window 100 -> 400 ms.
    assert (g["requests_met"], g["output_tokens_met"]) == (1, 3) and g["fraction_met"] == pytest.approx(1 / 3)
    assert g["requests_per_second"] == pytest.approx(1 / 0.3) and g["output_tokens_per_second"] == pytest.approx(10.0)
    assert "goodput" not in point_metrics(rec, concurrency=1, qps_target=None)[0]


def test_slo_option_and_config_block() -> None:
    assert parse_slo("ttft_ms=500, tpot_ms=50") == ["slo.ttft_ms=500", "slo.tpot_ms=50"]
    cfg = load_run_config(None, ["workload=synthetic", *parse_slo("e2el_ms=1.5,ttft_ms=2")])
    assert cfg.slo is not None and cfg.slo.to_ns() == {"ttft": 2 * MS, "e2el": 1_500_000}
    for bad, msg in (("ttft=5", "expected ttft_ms="), ("tpot_ms=fast", "tpot_ms must be a number"), ("", "empty")):
        with pytest.raises(ConfigError, match=msg):
            parse_slo(bad)
    with pytest.raises(ConfigError, match=r"config: slo\.ttft_ms: Input should be greater than 0"):
        load_run_config(None, ["workload=synthetic", "slo.ttft_ms=0"])
    with pytest.raises(ConfigError, match=r"config: slo\.p99_ms: unknown field"):
        load_run_config(None, ["workload=synthetic", "slo.p99_ms=3"])


def test_cli_run_with_slo_and_export(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Offline", "--out",
                              str(tmp_path), "--set", "sut.params={latency: {dist: constant, ms: 10}, max_batch: 100, "
                              "max_inflight: 1}", "--set", "settings.offline_expected_qps=10000", "--set",
                              "settings.min_duration_ms=200", "--executor", "inprocess", "--quiet", "--no-report",
                              "--slo", "e2el_ms=600000", "--export", "jsonl"])
    assert res.exit_code == 0, res.output
    run_dir = next(tmp_path.iterdir())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["goodput"]["requests_met"] == result["samples_completed"] == 2200
    rows = (run_dir / "requests.jsonl").read_text().splitlines()
    assert len(rows) == 2200 and json.loads(rows[0])["error"] is None
    bad = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "run directory not found" in bad.output
    bad = runner.invoke(app, ["run", "--workload", "synthetic", "--slo", "ttft=3"])
    assert bad.exit_code == 2 and "--slo 'ttft=3'" in bad.output


def test_direct_channel_carries_input_tokens_and_finish_reason() -> None:
    import asyncio

    from raybench.core.protocols import Response
    from raybench.ray.direct import DirectClient, serve_direct

    secret = bytes(range(32))

    async def issue(qid: int, indices: list[int], samples: list[object], on_token: object) -> list[Response]:
        return [Response(b"x", 4, None, 7, n_input_tokens=11 + i, finish_reason=("stop", None)[i])
                for i in range(len(samples))]

    async def main() -> list[Response]:
        srv = await serve_direct("127.0.0.1", issue, secret)
        try:
            c = DirectClient("127.0.0.1", srv.port, "replica 0", secret)
            await c.connect()
            try:
                return list(await c.request(1, [0, 1], ["a", "b"], None))
            finally:
                await c.close()
        finally:
            srv.close()

    assert asyncio.run(main()) == [Response(b"x", 4, None, 7, 11, "stop"), Response(b"x", 4, None, 7, 12, None)]


def test_llm_library_counts_input_tokens_from_its_token_ids() -> None:
    from workloads.llm.dataset import LLMLibrary

    lib = LLMLibrary([{"tok_input": [5, 6, 7], "input": "a b c", "output": "a"},
                      {"tok_input": np.arange(9, dtype=np.int32), "input": "x", "output": "b"},
                      {"messages": [{"role": "user", "content": "hi"}], "output": "c"}], prompt="text")
    assert [lib.input_tokens(i) for i in range(3)] == [3, 9, 0]
