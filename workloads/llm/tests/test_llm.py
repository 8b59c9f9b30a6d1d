"""Llama 3.1 8B workload: reference-format loading, demo set, ROUGE on hand-checked samples."""

from __future__ import annotations

import json
import re
from array import array
from pathlib import Path

import pytest

from workloads.llm import WORKLOAD
from workloads.llm.accuracy import score
from workloads.llm.dataset import BYTES_TOKENIZER, LLMLibrary, load_library, read_records

# The submission checker's regex for llama3.1-8b accuracy.txt (ACC_PATTERN["ROUGE1"]).
CHECKER_ROUGE1 = re.compile(r".*'rouge1':\s+'?([\d.]+)'?.*")


def ids(text: str) -> bytes:
    """A response as the accuracy log holds it: int32 token ids (demo tokenizer: UTF-8 bytes)."""
    return array("i", list(text.encode())).tobytes()


def test_spec_is_cheap_and_declares_mlperf_bounds() -> None:
    assert WORKLOAD.mlperf_model == "llama3_1-8b" and WORKLOAD.token_latencies
    from raybench.config import load_run_config
    from raybench.run import prepare_run

    # Bounds come from mlperf.conf for the model key; "Interactive" is a Server run of another key.
    for model, (ttft_ms, tpot_ms) in (("llama3_1-8b", (2000, 100)), ("llama3_1-8b-interactive", (500, 30))):
        cfg = load_run_config(None, ["workload=llm", "sut=fake", "scenario=Server", f"model={model}"])
        s = prepare_run(cfg).settings
        assert (s.server_ttft_latency, s.server_tpot_latency) == (ttft_ms * 10**6, tpot_ms * 10**6)
        assert s.use_token_latencies
    assert WORKLOAD.params["max_tokens"] == 128


def test_demo_library_is_generated_once_and_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    lib = load_library(dict(WORKLOAD.params))
    again = load_library(dict(WORKLOAD.params))
    assert lib.total_count == 24 and lib.tokenizer == BYTES_TOKENIZER
    assert lib.records == again.records
    assert (tmp_path / "llm-demo-1" / "cnn_eval.json").exists()
    lib.load([0, 3])
    s = lib.get(3)
    assert s["max_tokens"] == 128 and bytes(s["prompt"]).decode().startswith("Summarize the following")
    with pytest.raises(KeyError):
        lib.get(1)


def test_reads_records_and_pandas_columns_layouts(tmp_path: Path) -> None:
    recs = [{"input": "p0", "tok_input": [1, 2], "output": "t0"}, {"input": "p1", "tok_input": [3], "output": "t1"}]
    (tmp_path / "cnn_eval.json").write_text(json.dumps(recs))
    cols = {k: {str(i): r[k] for i, r in enumerate(recs)} for k in ("input", "tok_input", "output")}
    (tmp_path / "cols.json").write_text(json.dumps(cols))
    assert read_records(tmp_path / "cnn_eval.json") == recs
    assert read_records(tmp_path / "cols.json") == recs
    lib = load_library({"data_dir": str(tmp_path), "prompt": "text", "count": 1})
    lib.load([0])
    assert lib.total_count == 1 and lib.get(0) == {"prompt": "p0", "max_tokens": 128}
    (tmp_path / "bad.json").write_text('[{"input": "x", "output": "y"}]')
    with pytest.raises(ValueError, match="bad.json: record 0 lacks 'tok_input'"):
        load_library({"data_dir": str(tmp_path), "dataset_file": "bad.json"})
    with pytest.raises(ValueError, match="nope.json: dataset file not found"):
        load_library({"data_dir": str(tmp_path), "dataset_file": "nope.json"})


def _lib(targets: list[str]) -> LLMLibrary:
    recs = [{"input": "x", "tok_input": [1], "output": t} for t in targets]
    return LLMLibrary(recs, tokenizer=BYTES_TOKENIZER)


def test_rouge_on_hand_checked_samples() -> None:
    lib = _lib(["the cat sat on the mat", "dogs bark loudly", "a b c d"])
    entries = [
        (0, ids("the cat sat")),  # r1: P 1, R 3/6 -> F 2/3; r2: 2 of 5 ref bigrams -> F 4/7; rL: LCS 3 -> 2/3
        (1, ids("dogs bark loudly")),  # identical -> 1
        (1, ids("something else entirely")),  # duplicate qsl_idx: ignored, as the reference does
        (2, ids("")),  # empty -> 0
    ]
    r = score(entries, lib, {})
    # means over 3 samples, x100, rounded to 4 decimals
    assert r.metrics["rouge1"] == round((2 / 3 + 1 + 0) / 3 * 100, 4) == 55.5556
    assert r.metrics["rouge2"] == round((4 / 7 + 1 + 0) / 3 * 100, 4) == 52.381
    assert r.metrics["rougeL"] == 55.5556 and r.metrics["rougeLsum"] == 55.5556
    assert r.metrics["gen_len"] == len("the cat sat") + len("dogs bark loudly") and r.metrics["gen_num"] == 3
    assert r.passed is None and r.targets == {}  # a 3-sample set has no MLPerf target
    assert CHECKER_ROUGE1.match(r.accuracy_txt.splitlines()[0]).group(1) == "55.5556"  # type: ignore[union-attr]
    assert r.accuracy_txt.startswith(
        "{'rouge1': '55.5556', 'rouge2': '52.381', 'rougeL': '55.5556', 'rougeLsum': '55.5556', "
        "'gen_len': 27, 'gen_num': 3}")


def test_text_responses_and_targets() -> None:
    lib = _lib(["alpha beta gamma", "delta epsilon"])
    entries = [(0, b"alpha beta gamma"), (1, b"delta epsilon")]
    r = score(entries, lib, {"response_format": "text",
                             "targets": {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "gen_len": 29}})
    assert r.metrics["rouge1"] == 100.0 and r.metrics["gen_len"] == 29
    assert r.targets == {"rouge1": 99.0, "rouge2": 99.0, "rougeL": 99.0, "gen_len": 0.9 * 29}
    assert r.passed is True
    short = score(entries[:1], lib, {"response_format": "text", "targets": {"rouge1": 10.0}})
    assert short.passed is False  # every sample must be scored


def test_full_pipeline_on_the_demo_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    lib = load_library(dict(WORKLOAD.params))
    entries = [(i, ids(t)) for i, t in enumerate(lib.targets)]  # a perfect summarizer
    r = score(entries, lib, dict(WORKLOAD.params))
    assert [r.metrics[k] for k in ("rouge1", "rouge2", "rougeL")] == [100.0, 100.0, 100.0]
    assert r.metrics["gen_num"] == 24
