"""Token metrics of a chat run against the scripted server: exact lengths, finish reasons, SLO
goodput, end-to-end interactivity and the per-request export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raybench.export import ExportError, export_run, iter_requests

from .scripted_run import Script, run_scripted

# name: (chunks, ttft_ms, itl_ms, finish_reason, prompt_tokens)
CASES = {
    "a": (5, 10, 5, "stop", 7),     # TTFT 10, TPOT 5, latency 30: meets every SLO
    "b": (5, 100, 5, "length", 11),  # TTFT 100 > 50: misses
    "c": (3, 10, 40, "length", 13),  # TPOT 40 > 20: misses
    "d": (1, 20, 0, "stop", 5),      # one token: no TPOT, latency 20: meets
    "e": (4, 10, 5, "stop", 9),      # TTFT 10, TPOT 5, latency 25: meets
}
SCRIPTS = {k: Script(chunks=[k] * n, ttft_ms=t, itl_ms=i, finish_reason=f, prompt_tokens=p, usage=n)
           for k, (n, t, i, f, p) in CASES.items()}


def _prompts(tmp_path: Path) -> Path:
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"prompt": k}) + "\n" for k in CASES))
    return f


def test_lengths_finish_reasons_goodput_and_interactivity(tmp_path: Path) -> None:
    out, ex = run_scripted(tmp_path, _prompts(tmp_path), SCRIPTS, [
        "scenario=SingleStream", "mode=AccuracyOnly", "accuracy=false", "records=all",
        "slo.ttft_ms=50", "slo.tpot_ms=20", "slo.e2el_ms=1000"])
    m = out.metrics
    assert len(ex.requests) == 5 and m.samples_completed == 5
    assert m.total_tokens == 18 and m.total_input_tokens == 45
    assert m.input_tokens["min"] == 5 and m.input_tokens["max"] == 13 and m.input_tokens["count"] == 5
    assert m.output_tokens["min"] == 1 and m.output_tokens["max"] == 5
    assert m.finish_reasons == {"stop": 3, "length": 2}
    g = m.goodput
    assert g["slo_ms"] == {"ttft": 50.0, "tpot": 20.0, "e2el": 1000.0}
    assert (g["requests_met"], g["requests_completed"], g["output_tokens_met"]) == (3, 5, 10)
    assert g["fraction_met"] == 0.6
    assert g["requests_per_second"] == pytest.approx(m.samples_per_second * 3 / 5)
    # Sum of latencies: 30 + 120 + 90 + 20 + 25 = 285 ms for 18 tokens.
    assert m.e2e_interactivity == pytest.approx(18 / 0.285)
    res = json.loads((out.run_dir / "result.json").read_text())
    assert res["finish_reasons"] == {"stop": 3, "length": 2} and res["goodput"]["requests_met"] == 3
    assert res["total_input_tokens"] == 45

    path = export_run(out.run_dir, "jsonl")
    rows = sorted((json.loads(x) for x in path.read_text().splitlines()), key=lambda r: r["input_tokens"])
    assert [r["input_tokens"] for r in rows] == [5, 7, 9, 11, 13]
    assert [r["output_tokens"] for r in rows] == [1, 5, 4, 5, 3]
    assert [r["finish_reason"] for r in rows] == ["stop", "stop", "stop", "length", "length"]
    assert [len(r["token_ns"]) for r in rows] == [1, 5, 4, 5, 3]
    b = rows[3]  # "b": the first chunk 100 ms after the send, then every 5 ms
    assert b["ttft_ns"] == 100_000_000 and b["latency_ns"] == 120_000_000 and b["error"] is None
    assert [t - b["send_ns"] for t in b["token_ns"]] == [100_000_000, 105_000_000, 110_000_000, 115_000_000,
                                                       120_000_000]
    assert b["first_token_ns"] == b["token_ns"][0] and b["end_ns"] == b["token_ns"][-1]

    from rich.console import Console

    from raybench.progress import print_summary

    con = Console(record=True, width=200)
    print_summary(con, out)
    text = con.export_text()
    assert "finish reasons" in text and "stop=3, length=2" in text
    assert "goodput (ttft<=50ms, tpot<=20ms, e2el<=1000ms)" in text and "(3/5 met)" in text

    pytest.importorskip("matplotlib")
    from raybench.report.html import iter_cells, write_report

    cells = dict(iter_cells(write_report(out.run_dir).read_text()))
    assert cells["tok-finish-stop"] == 3 and cells["tok-finish-length"] == 2
    assert cells["tok-goodput-met"] == 3 and cells["tok-input_tokens-mean"] == 9.0

    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(export_run(out.run_dir, "parquet"))
    assert table.num_rows == 5 and sorted(table.column("input_tokens").to_pylist()) == [5, 7, 9, 11, 13]


def test_ttft_only_slo_counts_and_no_records(tmp_path: Path) -> None:
    out, _ = run_scripted(tmp_path, _prompts(tmp_path), SCRIPTS, [
        "scenario=SingleStream", "mode=AccuracyOnly", "accuracy=false", "slo.ttft_ms=20"])
    g = out.metrics.goodput
    assert (g["requests_met"], g["output_tokens_met"]) == (4, 13)  # a, c, d (20 <= 20), e
    with pytest.raises(ExportError, match="no records.npz or records-shard"):
        export_run(out.run_dir, "jsonl")
    with pytest.raises(ExportError, match="--format: expected jsonl or parquet"):
        export_run(out.run_dir, "csv")


def _word_tokenizer(d: Path) -> Path:
    """A tiny local word-level tokenizer (no download): one token per known word."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"[UNK]": 0, "one": 1, "two": 2, "three": 3, "four": 4}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(d)
    return d


def test_input_tokens_from_the_workload_tokenizer_without_usage(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "one two three"}) + "\n"
                 + json.dumps({"messages": [{"role": "user", "content": "four one"}]}) + "\n")
    scripts = {"one two three": Script(chunks=["x"], ttft_ms=5, usage=None, finish_reason="stop"),
               "four one": Script(chunks=["y", "z"], ttft_ms=5, usage=None, finish_reason="length")}
    tok = _word_tokenizer(tmp_path / "tok")
    out, _ = run_scripted(tmp_path, f, scripts, ["scenario=SingleStream", "mode=AccuracyOnly", "accuracy=false",
                                                 f"workload.params.tokenizer={tok}"])
    m = out.metrics
    # No usage from the server: 3 and 2 words counted by the tokenizer (the messages joined).
    assert m.total_input_tokens == 5 and (m.input_tokens["min"], m.input_tokens["max"]) == (2, 3)
    assert m.total_tokens == 3 and m.finish_reasons == {"stop": 1, "length": 1}


def test_export_from_shard_records(tmp_path: Path) -> None:
    out, _ = run_scripted(tmp_path, _prompts(tmp_path), SCRIPTS, [
        "scenario=Concurrency", "settings.target_concurrency=2", "shards=2", "mode=AccuracyOnly", "accuracy=false",
        "records=shard"])
    assert sorted(p.name for p in out.run_dir.glob("records-shard*.npz")) == ["records-shard0.npz", "records-shard1.npz"]
    rows = list(iter_requests(out.run_dir))
    assert sorted(r["shard"] for r in rows) == [0, 0, 0, 1, 1]
    assert sorted((r["input_tokens"], r["finish_reason"], len(r["token_ns"])) for r in rows) == [
        (5, "stop", 1), (7, "stop", 5), (9, "stop", 4), (11, "length", 5), (13, "length", 3)]


def test_export_token_times_stay_with_their_request_when_completions_reorder(tmp_path: Path) -> None:
    out, _ = run_scripted(tmp_path, _prompts(tmp_path), SCRIPTS, [
        "scenario=Concurrency", "settings.target_concurrency=3", "mode=AccuracyOnly", "accuracy=false",
        "records=all"])
    rows = list(iter_requests(out.run_dir))
    ends = [r["end_ns"] for r in rows]
    assert ends != sorted(ends)  # requests completed out of their record order
    for r in rows:
        assert len(r["token_ns"]) == r["output_tokens"]
        assert r["token_ns"][0] == r["first_token_ns"] and r["token_ns"][-1] == r["end_ns"]
