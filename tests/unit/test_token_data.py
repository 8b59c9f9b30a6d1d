"""The first token's data (LoadGen's ``token_data``): asked for only for accuracy-logged samples,
kept by ``Query``, written into the accuracy log in LoadGen's field order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raybench.core.clock import VirtualClock
from raybench.core.logs.accuracy_log import write_accuracy_log
from raybench.core.protocols import Query

TOKENS = "sut.params.tokens={n: 3, ttft_ms: 2, tpot_ms: 1}"


def test_query_keeps_the_first_data_only_when_asked() -> None:
    clock = VirtualClock()
    q = Query(id=0, indices=[0], samples=[b""], clock=clock)
    q.first_token(b"\x01\x00\x00\x00")
    assert q.first_token_data is None and q.first_token_ns == clock.now_ns()
    q = Query(id=0, indices=[0], samples=[b""], clock=clock, want_token_data=True)
    q.token(b"\x07\x00\x00\x00")
    q.token(b"\x08\x00\x00\x00")
    q.first_token(b"\x09\x00\x00\x00")
    assert q.first_token_data == b"\x07\x00\x00\x00" and len(q.token_ns or []) == 2
    q = Query(id=0, indices=[0], samples=[b""], clock=None, want_token_data=True)
    q.token(bytearray(b"\x05"))  # no clock: no times, the data is still kept (as bytes)
    assert (q.first_token_data, q.first_token_ns, q.token_ns) == (b"\x05", 0, None)


def test_accuracy_log_writes_token_data_between_data_and_token_count(tmp_path: Path) -> None:
    entries = [(3, 30, b"\x01\x02", 2, None), (1, 10, b"\xab", 1, b"\xab\xcd"), (2, 20, b"", 0)]
    path = write_accuracy_log(tmp_path / "a.json", entries, with_token_count=True)
    assert path.read_text() == (
        '[\n{ "seq_id" : 1, "qsl_idx" : 10, "data" : "AB", "token_data" : "ABCD", "token_count" : 1 },\n'
        '{ "seq_id" : 2, "qsl_idx" : 20, "data" : "", "token_count" : 0 },\n'
        '{ "seq_id" : 3, "qsl_idx" : 30, "data" : "0102", "token_count" : 2 }\n]\n')
    # Without token latencies LoadGen keeps no first tokens: neither field is written.
    path = write_accuracy_log(tmp_path / "b.json", entries[:2])
    assert path.read_text() == ('[\n{ "seq_id" : 1, "qsl_idx" : 10, "data" : "AB" },\n'
                                '{ "seq_id" : 3, "qsl_idx" : 30, "data" : "0102" }\n]\n')


def test_fake_sut_reports_its_first_token_only_for_logged_samples(vrun, monkeypatch: pytest.MonkeyPatch) -> None:
    from reference_suts.fake.sut import FakeSUT

    calls = []
    orig = FakeSUT._answer
    monkeypatch.setattr(FakeSUT, "_answer", lambda self, s: calls.append(1) or orig(self, s))
    out = vrun("scenario=Server", TOKENS, "sut.params.echo=true", "settings.use_token_latencies=1",
               "settings.server_target_qps=100", "settings.min_duration_ms=1000", "settings.min_query_count=200",
               "settings.accuracy_log_sampling_target=20", "settings.accuracy_log_rng_seed=7")
    entries = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    done = out.metrics.samples_completed
    assert (done, len(entries)) == (200, 19)
    assert entries[0] == {"seq_id": 8, "qsl_idx": 716, "data": b"00000716|0000071".hex().upper(),
                          "token_data": "30303030", "token_count": 3}  # the sample payload "00000716|..." echoed
    # One answer per sample, plus one first token per logged sample: nothing extra on the hot path.
    assert len(calls) == done + len(entries)
    for e in entries:
        assert list(e) == ["seq_id", "qsl_idx", "data", "token_data", "token_count"]
        assert e["token_data"] == e["data"][:8] and len(e["token_data"]) == 8 and e["token_count"] == 3


def test_accuracy_mode_logs_every_first_token(vrun) -> None:
    out = vrun("scenario=SingleStream", "mode=AccuracyOnly", TOKENS, "sut.params.echo=true",
               "settings.use_token_latencies=1")
    entries = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    assert len(entries) == out.metrics.samples_completed == 1024
    assert all(bytes.fromhex(e["token_data"]) == bytes.fromhex(e["data"])[:4] for e in entries)
    assert {e["token_count"] for e in entries} == {3}
