"""The llm sources and load shapes end to end: the endpoint SUT against a scripted local server.

The server (the endpoint SUT's own test server, on 127.0.0.1, on a thread of this process)
answers every request with three one-token chunks carrying token ids; the runs use the
in-process executor on the real clock with two shards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from raybench.config import load_run_config
from raybench.inprocess import InProcessExecutor
from raybench.run import run_benchmark
from reference_suts.openai_endpoint.tests.scripted_server import Script, ScriptedServer

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def server() -> Iterator[ScriptedServer]:
    script = Script(chunks=["a", "b", "c"], token_ids=[[97], [98], [99]], ttft_ms=2, itl_ms=1)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    srv = ScriptedServer({"ids": script}, default="ids")
    asyncio.run_coroutine_threadsafe(srv.__aenter__(), loop).result(30)
    try:
        yield srv
    finally:
        asyncio.run_coroutine_threadsafe(srv.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def run(tmp_path: Path, srv: ScriptedServer, *sets: str):
    cfg = load_run_config(None, ["workload=llm", "sut=openai_endpoint", "scenario=Server", "mlperf_conf=none",
                                 f"sut.params.urls=[{srv.url}]", "records=all", "settings.min_query_count=1",
                                 "query_timeout_s=20", f"out={tmp_path}", *sets])
    return run_benchmark(cfg, InProcessExecutor(shards=2))


def intended(run_dir: Path) -> list[int]:
    with np.load(run_dir / "records.npz") as z:
        return sorted(int(v) for k in z.files if k.endswith("/intended_ns") for v in z[k])


def test_trace_replay_sends_every_line_at_its_timestamp_over_speedup(tmp_path: Path, server: ScriptedServer) -> None:
    out = run(tmp_path, server, "workload.params.source=trace", f"workload.params.path={DATA / 'trace_tiny.jsonl'}",
              "workload.params.trace.block_size=4", "scenario.arrival.kind=trace", "scenario.arrival.speedup=10",
              "settings.min_duration_ms=0")
    m = out.metrics
    assert m.samples_completed == 5 and m.num_errors == 0 and len(server.requests) == 5
    # each request carries its line's exact prompt length (token ids) and output length
    got = sorted((len(r["prompt"]), r["max_tokens"]) for r in server.requests)
    assert got == sorted([(10, 3), (8, 5), (12, 1), (6, 2), (4, 4)])
    assert m.total_tokens == 15  # 3 token ids per answer
    # the schedule is the trace's timestamps (0, 27, 27, 1000, 2500 ms) / 10
    assert intended(out.run_dir) == [0, 2_700_000, 2_700_000, 100_000_000, 250_000_000]
    result = json.loads((out.run_dir / "result.json").read_text())
    assert result["load_shape"]["kind"] == "trace" and result["load_shape"]["speedup"] == 10.0
    assert any("not MLPerf-compliant" in w for w in result["warnings"])


def test_synthetic_prompts_at_a_constant_rate(tmp_path: Path, server: ScriptedServer) -> None:
    out = run(tmp_path, server, "workload.params.source=synthetic", "workload.params.synthetic.num_prompts=16",
              "workload.params.synthetic.input_len.mean=33", "workload.params.synthetic.output_len.mean=3",
              "scenario.arrival.kind=constant", "settings.server_target_qps=40", "settings.min_duration_ms=500")
    m = out.metrics
    # constant 40 qps: queries at 0, 25, ..., 500 ms -> 21, split over 2 shards (11 + 10)
    assert m.samples_completed == 21 and m.num_errors == 0 and len(server.requests) == 21
    assert [s["samples_completed"] for s in m.shards] == [11, 10]
    assert {len(r["prompt"]) for r in server.requests} == {33} and {r["max_tokens"] for r in server.requests} == {3}
    assert intended(out.run_dir) == [k * 25_000_000 for k in range(21)]
