"""Chat workload: JSONL parsing, demo file, exact match / token F1 on hand-checked answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.chat import WORKLOAD
from workloads.chat.accuracy import score, token_f1
from workloads.chat.dataset import load_library


def test_jsonl_prompts_and_messages(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi", "max_tokens": 5}\n\n{"messages": [{"role": "user", "content": "yo"}], '
                 '"expected": "hey"}\n')
    lib = load_library({"path": str(f), "max_tokens": 9})
    lib.load([0, 1])
    assert lib.get(0) == {"prompt": "hi", "max_tokens": 5}
    assert lib.get(1) == {"messages": [{"role": "user", "content": "yo"}], "max_tokens": 9}
    assert lib.expected == [None, "hey"]
    f.write_text('{"prompt": "ok"}\n{"text": "no"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: needs a string 'prompt' or a list 'messages'"):
        load_library({"path": str(f)})


def test_bad_max_tokens_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    for bad in ('"ten"', "2.5", "true", "0"):
        f.write_text(f'{{"prompt": "ok"}}\n{{"prompt": "hi", "max_tokens": {bad}}}\n')
        with pytest.raises(ValueError, match=r"p\.jsonl:2: 'max_tokens' must be a positive integer, got ") as err:
            load_library({"path": str(f)})
        assert "\n" not in str(err.value)
    f.write_text('{"prompt": "hi", "max_tokens": null}\n')
    lib = load_library({"path": str(f), "max_tokens": 7})
    lib.load([0])
    assert lib.get(0) == {"prompt": "hi"}


def test_demo_and_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    lib = load_library(dict(WORKLOAD.params))
    assert lib.total_count == 17 and lib.expected[0] == "3"
    assert token_f1("The answer is 5.", "5") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    entries = [(0, b"3"), (1, b"The answer is 4."), (0, b"wrong duplicate"), (16, b"blue!")]
    r = score(entries, lib, {"targets": {"exact_match": 60.0}})
    assert r.metrics["exact_match"] == round(200 / 3, 4) == 66.6667  # "3" and "blue!" match
    assert r.metrics["token_f1"] == round(100 * (1 + 0.5 + 1) / 3, 4) == 83.3333
    assert r.passed is True and r.accuracy_txt.startswith("{'exact_match': 66.6667")
