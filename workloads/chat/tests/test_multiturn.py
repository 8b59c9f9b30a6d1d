"""Multi-turn conversations: the next turn carries the actual answers, after the think time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raybench.export import iter_requests
from workloads.chat.dataset import load_library

from .scripted_run import Script, run_scripted

SYS = {"role": "system", "content": "Be brief."}
CONV_A = {"conversation": [SYS, {"role": "user", "content": "A1"}, {"role": "assistant", "content": "file reply 1"},
                           {"role": "user", "content": "A2"}, {"role": "assistant", "content": "file reply 2"},
                           {"role": "user", "content": "A3"}]}
CONV_B = {"conversations": [{"from": "human", "value": "B1"}, {"from": "gpt", "value": "file reply"},
                            {"from": "human", "value": "B2"}]}
TURNS = ("A1", "A2", "A3", "B1", "B2")


def _file(tmp_path: Path, *rows: dict) -> Path:
    f = tmp_path / "conv.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _scripts(**over: Script) -> dict[str, Script]:
    # Each answer is "ans" + the turn's text: 2 chunks, first after 10 ms, the second 5 ms later.
    return {k: over.get(k, Script(chunks=["ans", k], ttft_ms=10, itl_ms=5, usage=2, finish_reason="stop"))
            for k in TURNS}


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_library_turns_and_static_history(tmp_path: Path) -> None:
    lib = load_library({"path": str(_file(tmp_path, CONV_A, {"prompt": "single"}, CONV_B))})
    assert lib.total_count == 6 and lib.conversations == [[0, 1, 2], [3], [4, 5]]
    lib.load(range(6))
    # Other scenarios send each turn alone, with the file's own replies as history.
    assert lib.get(1) == {"messages": [SYS, u("A1"), a("file reply 1"), u("A2")]}
    assert lib.get(3) == {"prompt": "single"}
    assert lib.turn_payload(2, [b"x", b"y"]) == {"messages": [SYS, u("A1"), a("x"), u("A2"), a("y"), u("A3")]}
    f = _file(tmp_path, {"conversation": [{"role": "bot", "content": "hi"}]})
    with pytest.raises(ValueError, match=r"conv\.jsonl:1: conversation\[0\]\.role: must be system, user or assistant"):
        load_library({"path": str(f)})
    f = _file(tmp_path, {"prompt": "ok"}, {"conversations": [{"from": "gpt", "value": "hi"}]})
    with pytest.raises(ValueError, match=r"conv\.jsonl:2: conversation has no user message"):
        load_library({"path": str(f)})


def test_turns_carry_answers_in_order_with_think_time(tmp_path: Path) -> None:
    out, ex = run_scripted(tmp_path, _file(tmp_path, CONV_A, CONV_B), _scripts(), [
        "scenario=Concurrency", "settings.target_concurrency=1", "mode=AccuracyOnly", "accuracy=false",
        "records=all", "workload.params.think_time_s=0.5"])
    assert [r["messages"] for r in ex.requests] == [
        [SYS, u("A1")],
        [SYS, u("A1"), a("ansA1"), u("A2")],
        [SYS, u("A1"), a("ansA1"), u("A2"), a("ansA2"), u("A3")],
        [u("B1")],
        [u("B1"), a("ansB1"), u("B2")],
    ]
    m = out.metrics
    assert m.validity == "VALID", m.invalid_reasons
    assert m.samples_completed == 5 and m.latency["min"] == m.latency["max"] == 15_000_000  # per turn
    c = m.conversations
    assert (c["completed"], c["failed"]) == (2, 0)
    # A: 3 turns of 15 ms and 2 think times of 500 ms; B: 2 turns and 1 think time.
    assert (c["latency_ns"]["min"], c["latency_ns"]["max"]) == (530_000_000, 1_045_000_000)
    rows = list(iter_requests(out.run_dir))
    assert [(r["query_id"], r["turn"]) for r in rows] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    # The next turn is due when the answer arrived plus the think time, and is sent then.
    assert rows[1]["intended_ns"] - rows[0]["end_ns"] == 500_000_000 == rows[1]["send_ns"] - rows[0]["end_ns"]
    assert rows[3]["intended_ns"] == rows[2]["end_ns"]  # a new conversation starts at once
    assert m.finish_reasons == {"stop": 5} and m.e2e_interactivity == pytest.approx(10 / 0.075)


def test_a_failed_turn_ends_its_conversation(tmp_path: Path) -> None:
    out, ex = run_scripted(tmp_path, _file(tmp_path, CONV_A, CONV_B),
                           _scripts(A2=Script(status=500, body="engine died")), [
        "scenario=Concurrency", "settings.target_concurrency=2", "mode=AccuracyOnly", "accuracy=false",
        "max_error_rate=1"])
    sent = [r["messages"][-1]["content"] for r in ex.requests]
    assert sorted(sent) == ["A1", "A2", "B1", "B2"]  # A3 never sent
    c = out.metrics.conversations
    assert (c["completed"], c["failed"]) == (1, 1)
    assert out.metrics.num_errors == 1 and out.metrics.samples_completed == 3


def test_performance_mode_streams_play_whole_conversations(tmp_path: Path) -> None:
    out, ex = run_scripted(tmp_path, _file(tmp_path, CONV_A, CONV_B), _scripts(), [
        "scenario=Concurrency", "settings.target_concurrency=2", "settings.min_duration_ms=1000",
        "settings.min_query_count=10", "workload.params.think_time_s=0.1"])
    m = out.metrics
    c = m.conversations
    assert c["failed"] == 0 and c["completed"] >= 2
    # Every request's history holds exactly the earlier answers of its own conversation.
    for r in ex.requests:
        users = [x["content"] for x in r["messages"] if x["role"] == "user"]
        answers = [x["content"] for x in r["messages"] if x["role"] == "assistant"]
        assert answers == ["ans" + t for t in users[:-1]]
    firsts = [r["messages"][-1]["content"] for r in ex.requests if len(r["messages"]) <= 2]
    # The seeded draws: 7 x A and 5 x B started; when one stream met min duration and min queries
    # the other was between A2 and A3, so that A was cut (counted neither way): 6 A + 5 B complete.
    assert sorted(firsts) == ["A1"] * 7 + ["B1"] * 5
    assert (c["completed"], m.samples_completed, len(ex.requests)) == (11, 30, 30)
    assert [r["messages"][-1]["content"] for r in ex.requests][-4:] == ["A1", "B1", "A2", "B2"]
    assert (c["latency_ns"]["min"], c["latency_ns"]["max"]) == (130_000_000, 245_000_000)


def test_max_duration_cuts_a_conversation_between_turns(tmp_path: Path) -> None:
    # One stream; A takes 15 + 1000 + 15 + 1000 + 15 ms: max_duration 1.5 s stops it before A3.
    out, ex = run_scripted(tmp_path, _file(tmp_path, CONV_A), _scripts(), [
        "scenario=Concurrency", "settings.target_concurrency=1", "settings.min_duration_ms=60000",
        "settings.max_duration_ms=1500", "workload.params.think_time_s=1"])
    assert [r["messages"][-1]["content"] for r in ex.requests] == ["A1", "A2"]
    m = out.metrics
    assert m.samples_completed == 2 and m.conversations == {}  # cut: neither completed nor failed
    assert all(s["status"] == "ok" for s in m.shards)
