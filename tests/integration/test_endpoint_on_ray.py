"""The OpenAI endpoint SUT on Ray: an HTTP client inside each shard, TTFT/TPOT on the shard's clock.

The server is the scripted one of the endpoint SUT's own tests, on a thread of this process, with
known token timing: the first chunk 50 ms after the request, then one chunk every 10 ms. The
measured TTFT can only be later than 50 ms (it counts from the scheduled issue time) and TPOT must
come out at the server's 10 ms inter-token delay (a TPOT that wrongly included the TTFT,
latency / tokens = 200 ms / 16 = 12.5 ms or more, would not).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raybench.testing import ray_run
from reference_suts.openai_endpoint.tests.scripted_server import Script, ScriptedServer

pytestmark = pytest.mark.ray

TTFT_MS = 50
ITL_MS = 10
N_TOKENS = 16
MS = 1_000_000


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedServer]:
    """Every request gets 16 one-token chunks: the first after 50 ms, then every 10 ms; usage 16."""
    script = Script(chunks=[f"t{i} " for i in range(N_TOKENS)], ttft_ms=TTFT_MS, itl_ms=ITL_MS, usage=N_TOKENS)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    srv = ScriptedServer({"tokens": script}, default="tokens")
    asyncio.run_coroutine_threadsafe(srv.__aenter__(), loop).result(30)
    try:
        yield srv
    finally:
        asyncio.run_coroutine_threadsafe(srv.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def test_endpoint_sut_runs_inline_in_each_shard_with_token_timing(
    ray_local, scripted_server: ScriptedServer, tmp_path: Path  # noqa: F811
) -> None:
    out, ex = ray_run(tmp_path, "workload=chat", "sut=openai_endpoint", "scenario=Concurrency",
                      f"sut.params.urls=[{scripted_server.url}]", "sut.params.connections=8",
                      "settings.target_concurrency=16", "settings.min_duration_ms=2000", "settings.min_query_count=1",
                      shards=2)
    m = out.metrics
    assert ex.live_replicas == []  # no replica actors: the client lives in the shards
    assert m.num_errors == 0 and len(scripted_server.requests) == m.samples_completed
    assert len(m.shards) == 2 and all(s["samples_completed"] > 0 for s in m.shards)
    # 16 requests in flight at once (8 per shard), each one taking at least 50 + 15 x 10 = 200 ms.
    assert scripted_server.max_active == 16
    assert 16 <= m.samples_completed <= 16 * (m.duration_ns / (200 * MS) + 1)
    assert m.total_tokens == N_TOKENS * m.samples_completed  # usage reports 16 tokens
    # TTFT counts from the scheduled issue time, so no request can see its first token earlier than
    # the server sends it; the median is at most a few ms of scheduling later.
    assert m.ttft["min"] >= TTFT_MS * MS
    assert TTFT_MS * MS <= m.ttft["p50"] < (TTFT_MS + 25) * MS
    # TPOT = (latency - TTFT) / 15: the server's 10 ms spacing, plus timer overshoot on a busy host
    # (~1 ms here; the lower margin covers a first chunk read late by the client's loop).
    assert ITL_MS * MS * 0.9 <= m.tpot["p50"] < ITL_MS * MS * 1.25
