"""The OpenAI endpoint SUT on Ray: an HTTP client inside each shard, TTFT/TPOT on the shard's clock."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raybench.testing import ray_run

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def instant_server() -> Iterator[str]:
    """The benchmark's instant streaming server (16 one-token chunks), on a thread of this process."""
    spec = importlib.util.spec_from_file_location("endpoint_client_bench", ROOT / "benchmarks" / "endpoint_client.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(mod._InstantHTTP, "127.0.0.1", 0))
        ready.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()
        server.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert started.wait(30)
    try:
        yield f"http://127.0.0.1:{ready[0]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def test_endpoint_sut_runs_inline_in_each_shard_with_token_timing(ray_local, instant_server: str, tmp_path: Path) -> None:  # noqa: F811
    out, ex = ray_run(tmp_path, "workload=chat", "sut=openai_endpoint", "scenario=Concurrency",
                      f"sut.params.urls=[{instant_server}]", "sut.params.connections=8",
                      "settings.target_concurrency=16", "settings.min_duration_ms=2000", "settings.min_query_count=1",
                      shards=2)
    m = out.metrics
    assert ex.live_replicas == []  # no replica actors: the client lives in the shards
    assert m.num_errors == 0 and m.samples_completed > 500
    assert len(m.shards) == 2 and all(s["samples_completed"] > 0 for s in m.shards)
    # Every response streams 16 one-token chunks; usage reports 16 tokens.
    assert m.total_tokens == 16 * m.samples_completed
    assert 0 < m.ttft["p50"] < 50_000_000 and m.tpot["p50"] >= 0
