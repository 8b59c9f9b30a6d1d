"""llm workload sources: exact counts and token lengths for every dataset, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raybench.core.plan import rng
from raybench.core.spec import ParamsError, validate_params
from workloads.llm.dataset import LLMLibrary, load_library
from workloads.llm.params import LLMParams
from workloads.llm.sources import read_sharegpt
from workloads.llm.tokenizer import Tokenizer

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def bpe() -> Any:
    """The locally trained 1,000-token byte-level BPE of the tiny test models (no download)."""
    from reference_suts.hf_transformers.tiny import build_tokenizer

    return build_tokenizer()


def lib(params: dict[str, Any], hf: Any = None) -> LLMLibrary:
    return load_library(validate_params(LLMParams, params, "workload.params"), hf)


def counts(library: LLMLibrary, tok: Tokenizer) -> list[int]:
    """Token counts of the prompt *texts*, re-encoded: exact only if text and ids agree."""
    return [tok.count(r["input"]) for r in library.records]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_synthetic_fixed_lengths_bytes_tokenizer() -> None:
    L = lib({"source": "synthetic", "synthetic": {"num_prompts": 50, "input_len": {"mean": 37},
                                                  "output_len": {"mean": 9}}})
    assert L.total_count == 50 and L.name == "llm-synthetic" and L.tokenizer == "bytes"
    assert [len(r["tok_input"]) for r in L.records] == [37] * 50
    L.load([7])
    s = L.get(7)
    assert s["max_tokens"] == 9 and len(s["prompt"]) == 37 and "input" not in L.records[7]
    # prompt: text sends text of exactly as many tokens, the same prompts as the ids
    T = lib({"source": "synthetic", "prompt": "text", "synthetic": {"num_prompts": 50, "input_len": {"mean": 37},
                                                                   "output_len": {"mean": 9}}})
    assert [len(r["input"].encode()) for r in T.records] == [37] * 50
    assert [list(r["input"].encode()) for r in T.records] == [r["tok_input"].tolist() for r in L.records]
    # seeded: another seed gives other prompts
    other = lib({"source": "synthetic", "synthetic": {"num_prompts": 50, "input_len": {"mean": 37}, "seed": 1}})
    assert other.records[0]["tok_input"].tolist() != L.records[0]["tok_input"].tolist()


@pytest.mark.parametrize("dist", ["uniform", "normal", "lognormal"])
def test_synthetic_lengths_are_tokenizer_exact_with_a_bpe(bpe: Any, dist: str) -> None:
    spec = {"uniform": {"dist": "uniform", "min": 5, "max": 40},
            "normal": {"dist": "normal", "mean": 30, "std": 8, "min": 4, "max": 60},
            "lognormal": {"dist": "lognormal", "mean": 30, "std": 15, "min": 2, "max": 200}}[dist]
    L = lib({"source": "synthetic", "tokenizer": "tiny-bpe", "prompt": "text",
             "synthetic": {"num_prompts": 40, "seed": 3, "input_len": spec,
                           "output_len": {"dist": "uniform", "min": 1, "max": 16}}}, bpe)
    # The lengths the rule gives, drawn here from the same seeded stream (tag 1 = input, 2 = output)
    g = rng(3, 1)
    if dist == "uniform":
        want = g.integers(5, 41, size=40)
    elif dist == "normal":
        want = np.clip(np.rint(g.normal(30, 8, size=40)), 4, 60)
    else:
        s2 = math.log1p((15 / 30) ** 2)
        want = np.clip(np.rint(g.lognormal(math.log(30) - s2 / 2, math.sqrt(s2), size=40)), 2, 200)
    tok = Tokenizer("tiny-bpe", bpe)
    assert counts(L, tok) == [len(r["tok_input"]) for r in L.records] == want.astype(int).tolist()
    assert [r["max_tokens"] for r in L.records] == rng(3, 2).integers(1, 17, size=40).tolist()
    L.load([0])
    assert L.get(0)["prompt"] == L.records[0]["input"]  # prompt: text sends the text


def test_lognormal_lengths_have_the_stated_mean_and_std() -> None:
    from workloads.llm.synthetic import draw_lengths

    x = draw_lengths({"dist": "lognormal", "mean": 200, "std": 80, "min": 1}, 50_000, 0, 1)
    assert abs(x.mean() - 200) < 2.0 and abs(x.std() - 80) < 2.0  # SE of the mean ~0.36, of the std ~0.5
    n = draw_lengths({"dist": "normal", "mean": 100, "std": 10}, 50_000, 0, 1)
    assert abs(n.mean() - 100) < 0.3 and abs(n.std() - 10) < 0.3


def test_shared_prefix_groups_share_exactly_p_tokens(bpe: Any) -> None:
    P = 20
    L = lib({"source": "shared_prefix", "tokenizer": "tiny-bpe", "prompt": "text",
             "shared_prefix": {"num_groups": 3, "prompts_per_group": 4, "prefix_len": P,
                               "suffix_len": {"dist": "uniform", "min": 1, "max": 9}, "output_len": {"mean": 7}}}, bpe)
    tok = Tokenizer("tiny-bpe", bpe)
    assert L.total_count == 12 and [r["group"] for r in L.records] == [0] * 4 + [1] * 4 + [2] * 4
    ids = [r["tok_input"].tolist() for r in L.records]
    suffix = rng(0, 1).integers(1, 10, size=12).tolist()
    assert [len(t) for t in ids] == [P + s for s in suffix] == counts(L, tok)
    for i in range(12):
        for j in range(i + 1, 12):
            same = L.records[i]["group"] == L.records[j]["group"]
            assert common_prefix(ids[i], ids[j]) == (P if same else 0)
    assert {r["max_tokens"] for r in L.records} == {7}


def test_sharegpt_first_turn_and_whole_conversations() -> None:
    rows, skipped = read_sharegpt(DATA / "sharegpt_tiny.json", "first")
    assert len(rows) == 3 and skipped == 2  # "c" has no user turn, "d" no turns
    L = lib({"source": "sharegpt", "path": str(DATA / "sharegpt_tiny.json")})
    assert L.total_count == 3
    assert [r["input"] for r in L.records] == ["What is a cat?", "Hi", "2+2?"]
    assert L.targets == ["A small animal.", "Hello!", "4"]
    # output limit = the reference answer's tokens (bytes tokenizer: its UTF-8 length)
    assert [r["max_tokens"] for r in L.records] == [15, 6, 1]
    assert [len(r["tok_input"]) for r in L.records] == [14, 2, 4]
    L.load([0])
    assert L.get(0) == {"prompt": list(b"What is a cat?"), "max_tokens": 15}
    allc = lib({"source": "sharegpt", "path": str(DATA / "sharegpt_tiny.json"),
                "sharegpt": {"turns": "all", "output_len": "max_tokens"}, "max_tokens": 50})
    allc.load([0, 1])
    assert allc.get(0) == {"messages": [{"role": "user", "content": "What is a cat?"},
                                        {"role": "assistant", "content": "A small animal."},
                                        {"role": "user", "content": "And a dog?"}], "max_tokens": 50}
    assert allc.get(1)["messages"][0] == {"role": "system", "content": "Be brief."}
    assert allc.targets[0] == "A loyal friend."


def test_sharegpt_malformed_record_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "sg.json"
    bad.write_text('[\n  {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},\n'
                   '  {"conversations": [{"from": "human", "value": 3}]}\n]\n')
    with pytest.raises(ValueError, match=r"sg.json:3: turn 0 needs string 'from' and 'value'"):
        lib({"source": "sharegpt", "path": str(bad)})
    bad.write_text('[\n {"conversations": []},\n {"conversations": [}\n]')
    with pytest.raises(ValueError, match=r"sg.json:3: not valid JSON"):
        lib({"source": "sharegpt", "path": str(bad)})
    jl = tmp_path / "sg.jsonl"
    jl.write_text('{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}\n\n{"x": 1}\n')
    with pytest.raises(ValueError, match=r"sg.jsonl:3: a ShareGPT record needs a list 'conversations'"):
        lib({"source": "sharegpt", "path": str(jl)})
    with pytest.raises(ValueError, match=r"nope.json: file not found"):
        lib({"source": "sharegpt", "path": str(tmp_path / "nope.json")})


def test_local_hf_parquet_and_arrow_with_a_column_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"question": ["one?", "two two?", "three?"], "answer": ["1", "2", "3"], "n": [4, 5, 6]})
    pq.write_table(t, tmp_path / "train.parquet")
    cols = {"prompt": "question", "output": "answer", "max_tokens": "n"}
    L = lib({"source": "hf", "path": str(tmp_path / "train.parquet"), "hf": {"columns": cols}})
    assert L.total_count == 3 and L.targets == ["1", "2", "3"]
    assert [r["max_tokens"] for r in L.records] == [4, 5, 6]
    assert [len(r["tok_input"]) for r in L.records] == [4, 8, 6]
    # a save_to_disk-style directory: arrow stream files, read in name order
    d = tmp_path / "ds"
    d.mkdir()
    for k, part in enumerate([t.slice(0, 2), t.slice(2, 1)]):
        with pa.ipc.new_stream(str(d / f"data-0000{k}-of-00002.arrow"), part.schema) as w:
            w.write_table(part)
    (d / "dataset_info.json").write_text("{}")
    D = lib({"source": "hf", "path": str(d), "hf": {"columns": {"prompt": "question"}}, "max_tokens": 11})
    assert [r["input"] for r in D.records] == ["one?", "two two?", "three?"]
    assert [r["max_tokens"] for r in D.records] == [11, 11, 11] and D.targets == ["", "", ""]
    with pytest.raises(ValueError, match=r"train.parquet: no column 'q' \(workload.params.hf.columns.prompt\)"):
        lib({"source": "hf", "path": str(tmp_path / "train.parquet"), "hf": {"columns": {"prompt": "q"}}})
    # rows count from 1, as JSONL lines do: the second row is row 2
    pq.write_table(pa.table({"prompt": ["ok", None]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: row 2: column 'prompt' must be a non-empty string"):
        lib({"source": "hf", "path": str(tmp_path / "bad.parquet")})
    pq.write_table(pa.table({"prompt": ["a", "b", "c"], "mt": [5, 7, 0]}), tmp_path / "badmt.parquet")
    with pytest.raises(ValueError, match=r"badmt.parquet: row 3: column 'mt' must be an integer >= 1$"):
        lib({"source": "hf", "path": str(tmp_path / "badmt.parquet"), "hf": {"columns": {"prompt": "prompt", "max_tokens": "mt"}}})
    pq.write_table(pa.table({"prompt": [None, "b"]}), tmp_path / "first.parquet")
    with pytest.raises(ValueError, match=r"first.parquet: row 1: column 'prompt'"):
        lib({"source": "hf", "path": str(tmp_path / "first.parquet")})
    with pytest.raises(ParamsError, match=r"workload.params.hf: columns.prompt: the prompt column is required"):
        validate_params(LLMParams, {"hf": {"columns": {"output": "a"}}}, "workload.params")


def test_trace_lengths_hash_blocks_and_timestamps() -> None:
    L = lib({"source": "trace", "path": str(DATA / "trace_tiny.jsonl"), "trace": {"block_size": 4}})
    ids = [r["tok_input"].tolist() for r in L.records]
    assert L.total_count == 5 and [len(t) for t in ids] == [10, 8, 12, 6, 4]
    assert [r["max_tokens"] for r in L.records] == [3, 5, 1, 2, 4]
    assert L.arrival_ns.tolist() == [0, 27_000_000, 27_000_000, 1_000_000_000, 2_500_000_000]
    assert L.issue_order.tolist() == [0, 1, 2, 3, 4] and L.performance_count == 5
    # equal hash ids -> equal token blocks: rows 0-2 start with blocks [0, 1]; rows 0 and 2 also share
    # block 2 (row 0 keeps only its first 2 tokens); row 3's block 7 and row 4 (no ids) share nothing
    assert ids[0][:8] == ids[1] == ids[2][:8] and ids[0] == ids[2][:10]
    assert ids[2][8:12] != ids[2][4:8]
    assert ids[3][:4] != ids[0][:4]
    assert ids[4] != ids[0][:4]


def test_trace_prompts_are_tokenizer_exact_as_text(bpe: Any) -> None:
    L = lib({"source": "trace", "path": str(DATA / "trace_tiny.jsonl"), "tokenizer": "tiny-bpe", "prompt": "text",
             "trace": {"block_size": 4}}, bpe)
    assert counts(L, Tokenizer("tiny-bpe", bpe)) == [10, 8, 12, 6, 4]
    assert L.records[1]["input"] == Tokenizer("tiny-bpe", bpe).decode(L.records[0]["tok_input"][:8].tolist())


def test_trace_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    good = {"timestamp": 0, "input_length": 3, "output_length": 2, "hash_ids": [1]}
    for bad, msg in [
        ({**good, "input_length": 0}, "t.jsonl:2: 'input_length' must be an integer >= 1"),
        ({**good, "hash_ids": [-1]}, "t.jsonl:2: 'hash_ids' must be a list of integers >= 0"),
        ({**good, "timestamp": "x"}, "t.jsonl:2: 'timestamp' must be a number of ms >= 0"),
    ]:
        f.write_text(json.dumps({**good, "timestamp": 5}) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=msg if "timestamp" in msg else msg.replace("[", r"\[")):
            lib({"source": "trace", "path": str(f)})
    f.write_text(json.dumps({**good, "timestamp": 5}) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r"t.jsonl:2: 'timestamp' 0 is before the previous line's 5"):
        lib({"source": "trace", "path": str(f)})
    f.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"t.jsonl:2: not valid JSON"):
        lib({"source": "trace", "path": str(f)})


def test_generated_demos_and_bad_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    sizes = {src: lib({"source": src}).total_count for src in ("sharegpt", "hf", "trace")}
    assert sizes == {"sharegpt": 16, "hf": 16, "trace": 32}
    with pytest.raises(ParamsError, match=r"workload.params.synthetic.input_len: max: required"):
        validate_params(LLMParams, {"synthetic": {"input_len": {"dist": "uniform"}}}, "workload.params")
    with pytest.raises(ParamsError, match=r"workload.params.source"):
        validate_params(LLMParams, {"source": "pile"}, "workload.params")
    with pytest.raises(ValueError, match=r"workload.params.shared_prefix.num_groups: at most 94"):
        lib({"source": "shared_prefix", "shared_prefix": {"num_groups": 95}})
