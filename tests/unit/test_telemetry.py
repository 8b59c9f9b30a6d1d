"""Server telemetry: parsing vLLM/SGLang/TGI metrics, rates, the scraper thread, and a whole run.

The end-to-end test runs the chat workload in-process against the scripted endpoint while a
scripted ``/metrics`` server (on a thread) answers its k-th scrape with values made from k, so
every row of ``telemetry.jsonl`` can be checked exactly; a second, dead metrics URL checks that
failed scrapes are counted, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from raybench.telemetry import Scraper, extract, rates, targets

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 250.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 4096.0
vllm:generation_tokens_total{engine="1",model_name="m"} 1024.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 5.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 7.0
vllm:time_to_first_token_seconds_count{model_name="m"} 7.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.9
"""

SGLANG = """\
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="m"} 7557572.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.28
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="m"} 0.0075
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 5.0
"""

TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 9
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 32
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 40
tgi_request_generated_tokens_sum 5120
tgi_request_generated_tokens_count 40
"""

VLLM_V0 = """\
vllm:gpu_cache_usage_perc{model_name="m"} 0.75
vllm:gpu_prefix_cache_hit_rate{model_name="m"} 0.4
vllm:num_requests_running{model_name="m"} 1
"""


def test_extract_vllm_sglang_tgi_and_v0_names() -> None:
    assert extract(VLLM) == {"kv_cache_usage": 0.375, "requests_running": 7.0, "requests_waiting": 2.0,
                             "prefix_cache_queries": 1000.0, "prefix_cache_hits": 250.0, "generation_tokens": 5120.0}
    assert extract(SGLANG) == {"kv_cache_usage": 0.28, "requests_running": 12.0, "requests_waiting": 5.0,
                               "prefix_cache_hit_rate": 0.0075, "generation_tokens": 7557572.0}
    assert extract(TGI) == {"requests_running": 32.0, "requests_waiting": 9.0, "generation_tokens": 5120.0}
    assert extract(VLLM_V0) == {"kv_cache_usage": 0.75, "requests_running": 1.0, "prefix_cache_hit_rate": 0.4}
    assert extract("# nothing here\n") == {}
    assert extract("garbage { not prometheus\n" + VLLM_V0) == extract(VLLM_V0)  # only wanted lines are parsed
    with pytest.raises(ValueError):
        extract("vllm:num_requests_running{model_name=\"m\" 3\n")


def test_rates_from_counter_deltas() -> None:
    rows = [
        {"t_s": 0.0, "url": "u", "values": {"generation_tokens": 100.0, "prefix_cache_queries": 0.0,
                                            "prefix_cache_hits": 0.0, "kv_cache_usage": 0.1, "requests_running": 1.0}},
        {"t_s": 0.5, "url": "u", "values": {"generation_tokens": 150.0, "prefix_cache_queries": 40.0,
                                            "prefix_cache_hits": 10.0, "kv_cache_usage": 0.2, "requests_running": 2.0}},
        {"t_s": 1.0, "url": "u", "error": "timeout after 0.5s"},
        {"t_s": 1.5, "url": "u", "values": {"generation_tokens": 350.0, "prefix_cache_queries": 40.0,
                                            "prefix_cache_hits": 10.0, "kv_cache_usage": 0.3, "requests_running": 0.0}},
        {"t_s": 0.0, "url": "s", "values": {"prefix_cache_hit_rate": 0.5, "requests_waiting": 4.0}},
    ]
    r = rates(rows)
    u = r["u"]
    assert u["t_s"] == [0.0, 0.5, 1.5]
    assert u["kv_cache_usage"] == [0.1, 0.2, 0.3] and u["requests_running"] == [1.0, 2.0, 0.0]
    assert math.isnan(u["generation_tps"][0]) and u["generation_tps"][1:] == [100.0, 200.0]  # 50/0.5, 200/1.0
    assert math.isnan(u["prefix_hit_rate"][0]) and u["prefix_hit_rate"][1] == 0.25
    assert math.isnan(u["prefix_hit_rate"][2])  # no queries in that interval
    assert all(math.isnan(x) for x in u["requests_waiting"])
    assert r["s"]["prefix_hit_rate"] == [0.5] and r["s"]["requests_waiting"] == [4.0]


def test_targets_from_sut_params() -> None:
    assert targets({"urls": ["http://a:8000/v1", "http://b:8000/"], "telemetry_interval_s": 1.0}) == (
        ["http://a:8000/metrics", "http://b:8000/metrics"], 1.0)
    assert targets({"urls": ["http://a:8000"], "telemetry_urls": ["http://a:9090/m"], "telemetry_interval_s": 2}) == (
        ["http://a:9090/m"], 2.0)
    assert targets({"urls": ["http://a:8000"], "telemetry_interval_s": 0}) == ([], 0.0)
    assert targets({"model": "x"}) == ([], 0.0)  # not an endpoint SUT


def test_failed_scrapes_are_counted_by_reason_and_never_raise() -> None:
    answers = iter([
        VLLM,
        urllib.error.HTTPError("u", 404, "Not Found", {}, None),  # type: ignore[arg-type]
        "not { prometheus",
        'vllm:num_requests_running{model_name="m" 3',
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        urllib.error.URLError(TimeoutError("timed out")),
        RuntimeError("boom"),
    ])

    def fetch(url: str, timeout_s: float) -> str:
        a = next(answers)
        if isinstance(a, BaseException):
            raise a
        return a

    s = Scraper(["http://x/metrics"], 0.5, fetch=fetch)
    got = [s.scrape_once("http://x/metrics") for _ in range(7)]
    assert got[0]["values"]["generation_tokens"] == 5120.0
    assert [g.get("error") for g in got[1:]] == [
        "http 404", "no vLLM, SGLang or TGI serving metrics in the answer",
        "malformed metrics: Invalid value: '{model_name=\"m\"'",
        "connect failed: Connection refused", "timeout after 0.5s", "RuntimeError: boom"]
    summ = s.summary()
    assert summ["scrapes"] == 7 and summ["failures"] == 6
    assert summ["failure_reasons"]["http 404"] == 1 and summ["failure_reasons"]["timeout after 0.5s"] == 1


def test_scraper_thread_stops_by_the_deadline_on_its_own() -> None:
    calls: list[int] = []

    def fetch(url: str, timeout_s: float) -> str:
        calls.append(time.monotonic_ns())
        assert timeout_s <= 0.05
        return VLLM

    s = Scraper(["http://x/metrics"], 0.05, fetch=fetch)
    deadline = time.monotonic_ns() + 300_000_000
    s.set_deadline(deadline)
    s.start()
    assert s._thread is not None
    s._thread.join(2.0)
    assert not s._thread.is_alive()  # nobody called stop(): the deadline ended it
    assert all(c <= deadline for c in calls) and 3 <= len(calls) <= 7  # ~every 50 ms for 300 ms
    assert s.summary()["scrapes"] == len(calls) and s.summary()["failures"] == 0
    with pytest.raises(ValueError, match="^telemetry_interval_s: must be > 0, got 0$"):
        Scraper(["http://x/metrics"], 0)


def test_a_bad_ca_bundle_fails_every_scrape_with_one_reason_not_the_run() -> None:
    s = Scraper(["https://127.0.0.1:1/metrics"], 1.0, ca_bundle="/nonexistent/ca.pem")
    assert s.scrape_once("https://127.0.0.1:1/metrics")["error"] == "ca_bundle: /nonexistent/ca.pem: No such file or directory"
    assert s.summary()["failure_reasons"] == {"ca_bundle: /nonexistent/ca.pem: No such file or directory": 1}


# ---------------------------------------------------------------------------- a whole run
def _metrics_text(k: int) -> str:
    """The k-th scrape (0-based): every value is a function of k."""
    return (
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {k / 100}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {k}\n'
        f'vllm:num_requests_running{{engine="1",model_name="m"}} 1\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="m"}} {2 * k}\n'
        "# TYPE vllm:prefix_cache_queries counter\n"
        f'vllm:prefix_cache_queries_total{{model_name="m"}} {100 * k}\n'
        "# TYPE vllm:prefix_cache_hits counter\n"
        f'vllm:prefix_cache_hits_total{{model_name="m"}} {25 * k}\n'
        "# TYPE vllm:generation_tokens counter\n"
        f'vllm:generation_tokens_total{{model_name="m"}} {50 * k}\n'
    )


def _expected(k: int) -> dict[str, float]:
    return {"kv_cache_usage": k / 100, "requests_running": k + 1.0, "requests_waiting": 2.0 * k,
            "prefix_cache_queries": 100.0 * k, "prefix_cache_hits": 25.0 * k, "generation_tokens": 50.0 * k}


@pytest.fixture()
def servers() -> Iterator[tuple[str, str, list[int]]]:
    """(endpoint URL, metrics URL, scrape counter) served from a thread's event loop."""
    from aiohttp import web

    from reference_suts.openai_endpoint.tests.scripted_server import Script, ScriptedServer

    hits: list[int] = []

    async def metrics(request: web.Request) -> web.Response:
        k = len(hits)
        hits.append(k)
        return web.Response(text=_metrics_text(k), content_type="text/plain")

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    srv = ScriptedServer({"x": Script(chunks=["a", "b"], ttft_ms=5, itl_ms=5)}, default="x")

    async def up() -> tuple[web.AppRunner, str]:
        await srv.__aenter__()
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/metrics"  # type: ignore[union-attr]

    runner, murl = asyncio.run_coroutine_threadsafe(up(), loop).result(30)
    try:
        yield srv.url, murl, hits
    finally:
        async def down() -> None:
            await runner.cleanup()
            await srv.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def test_run_writes_exact_series_aligned_to_t0_and_the_report_plots_them(
        servers: tuple[str, str, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.report import write_report
    from raybench.report.html import iter_cells
    from raybench.run import run_benchmark

    for k in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(k, raising=False)
    url, murl, hits = servers
    dead = "http://127.0.0.1:1/metrics"
    cfg = load_run_config(None, [
        "workload=chat", "sut=openai_endpoint", "scenario=Concurrency", f"out={tmp_path}",
        f"sut.params.urls=[{url}]", "sut.params.connections=2", "sut.params.telemetry_interval_s=0.25",
        f"sut.params.telemetry_urls=[{murl},{dead}]",
        "settings.target_concurrency=2", "settings.min_duration_ms=1500", "settings.min_query_count=1",
    ])
    out = run_benchmark(cfg, InProcessExecutor())
    assert out.metrics.num_errors == 0
    lines = (out.run_dir / "telemetry.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    good = [r for r in rows if r["url"] == murl]
    bad = [r for r in rows if r["url"] == dead]
    # Every successful scrape is in the file, in order, with exactly the values served.
    assert len(good) == len(hits) >= 5  # 1.5 s at 4 scrapes a second, plus the run's start and end
    assert [r["values"] for r in good] == [_expected(k) for k in range(len(good))]
    assert all(r == {"t_s": r["t_s"], "url": dead, "error": "connect failed: Connection refused"} for r in bad)
    assert len(good) - 1 <= len(bad) <= len(good)  # scraped after the live URL in each round
    # The time axis is the run's: seconds since T0 (scraping starts before T0 and ends at the end).
    ts = [r["t_s"] for r in good]
    # In order and never bunched: rounds start an interval apart (a late round is skipped), so at
    # most one scrape per 0.25 s of the span plus the first (timestamps are fetch midpoints, which
    # a loaded machine can move by a fetch's duration, so single gaps are not asserted).
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert len(ts) <= int((ts[-1] - ts[0]) / 0.25 + 1e-9) + 2
    assert ts[0] < 0.25 and ts[-1] <= out.metrics.duration_ns / 1e9 + 0.5
    tel = out.result["telemetry"]
    assert tel == {"targets": [murl, dead], "interval_s": 0.25, "scrapes": len(rows), "failures": len(bad),
                   "failure_reasons": {"connect failed: Connection refused": len(bad)}, "file": "telemetry.jsonl",
                   "aligned": True}
    assert json.loads((out.run_dir / "result.json").read_text())["telemetry"] == tel
    page = write_report(out.run_dir).read_text()
    assert 'id="img-telemetry"' in page and (out.run_dir / "plots" / "telemetry.png").stat().st_size > 1000
    cells = dict(iter_cells(page))
    assert cells["tel-scrapes"] == len(rows) and cells["tel-failures"] == len(bad)
    assert "connect failed: Connection refused" in page
