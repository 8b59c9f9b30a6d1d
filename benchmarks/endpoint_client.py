"""How many streaming requests/s the openai_endpoint client sustains on one core.

Setup (targets.md): an instant OpenAI-compatible server in a separate process on the other core
(loopback, every response = 16 one-token SSE chunks + a usage chunk + ``[DONE]``, written at
once), and the client on one core. Measured in the same run:

1. closed loop, ``--concurrency`` requests always in flight, raybench ``OpenAIEndpointSUT``;
2. the same closed loop with a baseline client written the way vLLM ``bench serve`` is (one
   aiohttp session, one coroutine per request, ``async for line in response.content``, json per
   line), and the ratio of the two;
3. Poisson arrivals at ``--qps`` (500): achieved rate, TTFT p50/p99, send lateness, errors;
4. Poisson far past capacity (``--overload-qps``, default 3x the closed-loop rate) with
   ``max_inflight`` capped: the client must
   keep completing at about its capacity with no errors, and report how late it sent.

5. with ``--shards``: the full ``raybench run`` path on Ray (Concurrency scenario, the endpoint SUT
   inside each shard) with 1 and 2 load-generator shards.

Run: ``python3 benchmarks/endpoint_client.py [--seconds 5] [--concurrency 256] [--shards]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_TOKENS = 16


# -- the instant server (own process, raw asyncio protocol so it is never the bottleneck) ----------


def _sse_body(chat: bool) -> bytes:
    events = []
    for i in range(N_TOKENS):
        choice: dict = {"index": 0, "finish_reason": "length" if i == N_TOKENS - 1 else None}
        if chat:
            choice["delta"] = {"content": f"t{i} "}
        else:
            choice["text"] = f"t{i} "
        events.append({"id": "x", "object": "chat.completion.chunk", "model": "bench", "choices": [choice]})
    events.append({"id": "x", "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": N_TOKENS}})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


class _InstantHTTP(asyncio.Protocol):
    STREAM = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _sse_body(chat=True)
    )
    MODELS_BODY = b'{"object":"list","data":[{"id":"bench"}]}'
    MODELS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(MODELS_BODY),
        MODELS_BODY,
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            i = head.lower().find(b"content-length:")
            if i >= 0:
                length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
            if len(buf) < end + 4 + length:
                break
            out.append(self.MODELS if head.startswith(b"GET") else self.STREAM)
            buf = buf[end + 4 + length :]
        self.buf = buf
        if out:
            self.t.write(b"".join(out))  # type: ignore[attr-defined]


def _serve(port_q: mp.Queue, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_InstantHTTP, "127.0.0.1", 0, backlog=4096)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the baseline: how vLLM bench serve's client streams (one coroutine per request) --------------


async def _baseline_request(session, url: str, payload: dict) -> tuple[float, int, str | None]:
    """One request the vLLM-bench way: line iteration, json per line, perf_counter timestamps."""
    st = time.perf_counter()
    ttft = 0.0
    text = ""
    itl: list[float] = []
    last = st
    async with session.post(url=url, json=payload, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            return 0.0, 0, f"http {resp.status}"
        async for raw in resp.content:
            line = raw.strip()
            if not line:
                continue
            data = line.decode("utf-8").removeprefix("data: ")
            if data == "[DONE]":
                continue
            obj = json.loads(data)
            if obj.get("choices"):
                delta = obj["choices"][0]["delta"].get("content")
                now = time.perf_counter()
                if ttft == 0.0:
                    ttft = now - st
                else:
                    itl.append(now - last)
                last = now
                text += delta or ""
            usage = obj.get("usage")
            if usage:
                n = usage.get("completion_tokens")
    return ttft, n, None


async def closed_loop_baseline(url: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300, keepalive_timeout=60)
    payload = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": N_TOKENS,
               "stream": True, "stream_options": {"include_usage": True}}
    done = 0
    errors = 0
    stop = False
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600)) as s:
        async def worker() -> None:
            nonlocal done, errors
            while not stop:
                _, _, err = await _baseline_request(s, url + "/v1/chat/completions", payload)
                done += 1
                errors += err is not None

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(1.0)  # warm up
        d0, t0 = done, time.perf_counter()
        await asyncio.sleep(seconds)
        d1, t1 = done, time.perf_counter()
        stop = True
        await asyncio.gather(*tasks)
    return {"req_s": (d1 - d0) / (t1 - t0), "errors": errors}


# -- raybench ------------------------------------------------------------------------------------


class _Clock:
    """A monotonic clock whose sleeps do not spin (the client under test keeps the core busy)."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, t_ns: int) -> None:
        await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))

    nap_until = sleep_until


def _sut(url: str, max_inflight: int):
    from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT

    return OpenAIEndpointSUT({"urls": [url], "api": "chat", "model": "bench", "max_tokens": N_TOKENS,
                              "connections": min(max_inflight, 256), "max_inflight": max_inflight})


async def closed_loop_raybench(url: str, concurrency: int, seconds: float) -> dict:
    from raybench.core.protocols import Query

    sut = _sut(url, concurrency)
    await sut.start()
    clock = _Clock()
    done = 0
    errors = 0
    stop = False

    async def worker(k: int) -> None:
        nonlocal done, errors
        i = k
        while not stop:
            [r] = await sut.issue(Query(id=i, indices=[0], samples=["hi"], clock=clock))
            done += 1
            errors += r.error is not None
            i += concurrency

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    await asyncio.sleep(1.0)
    d0, t0, c0 = done, time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    d1, t1, c1 = done, time.perf_counter(), time.process_time()
    stop = True
    await asyncio.gather(*tasks)
    await sut.stop()
    # Client CPU per request: the harness's own cost of one streamed request (16 SSE chunks).
    return {"req_s": (d1 - d0) / (t1 - t0), "errors": errors, "cpu_us_per_req": (c1 - c0) / max(1, d1 - d0) * 1e6}


def shards_through_raybench(url: str, shards: int, concurrency: int, seconds: float) -> dict:
    """The full product path: `raybench run` on Ray, Concurrency scenario, the endpoint SUT inline
    in each load-generator shard (its own connection pool), the chat workload's demo prompts."""
    import tempfile

    from raybench.config import load_run_config
    from raybench.ray.executor import RayExecutor
    from raybench.run import run_benchmark

    with tempfile.TemporaryDirectory() as d:
        cfg = load_run_config(None, [
            "workload=chat", "sut=openai_endpoint", "scenario=Concurrency", f"out={d}", "report=false",
            f"sut.params.urls=[{url}]", f"sut.params.connections={max(1, concurrency // shards)}",
            f"settings.target_concurrency={concurrency}", f"settings.min_duration_ms={int(seconds * 1000)}",
            "settings.min_query_count=1", f"shards={shards}", "ray.shard_num_cpus=0", "ray.start_lead_s=1",
        ])
        m = run_benchmark(cfg, RayExecutor(cfg.ray)).metrics
    return {"req_s": m.samples_per_second, "errors": m.num_errors, "ttft_p50_ms": m.ttft.get("p50", 0) / 1e6}


async def poisson_raybench(url: str, qps: float, seconds: float, max_inflight: int, seed: int = 0) -> dict:
    """Open loop: issue at Poisson times; TTFT from intended send (what the harness reports)."""
    from raybench.core.protocols import Query

    sut = _sut(url, max_inflight)
    await sut.start()
    clock = _Clock()
    n = int(qps * seconds)
    gaps = np.random.default_rng(seed).exponential(1e9 / qps, n)
    t_start = clock.now_ns() + 50_000_000
    intended = (t_start + np.cumsum(gaps)).astype(np.int64)
    ttft = np.zeros(n, np.int64)
    late = np.zeros(n, np.int64)
    lat = np.zeros(n, np.int64)
    errs: list[str] = []
    tasks: list[asyncio.Task] = []

    async def one(i: int, t_int: int) -> None:
        q = Query(id=i, indices=[0], samples=["hi"], clock=clock)
        [r] = await sut.issue(q)
        if r.error:
            errs.append(r.error)
        else:
            ttft[i] = q.first_token_ns - t_int
            lat[i] = clock.now_ns() - t_int

    loop = asyncio.get_running_loop()
    for i in range(n):
        t_int = int(intended[i])
        now = clock.now_ns()
        if t_int > now + 200_000:
            await asyncio.sleep((t_int - now) / 1e9)
        late[i] = clock.now_ns() - t_int
        tasks.append(loop.create_task(one(i, t_int)))
    t_issued = clock.now_ns()
    await asyncio.gather(*tasks)
    t_end = clock.now_ns()
    await sut.stop()
    ok = lat > 0
    return {
        "target_qps": qps,
        "issued_qps": n / ((t_issued - t_start) / 1e9),
        "completed_qps": int(ok.sum()) / ((t_end - t_start) / 1e9),
        "ttft_p50_ms": float(np.percentile(ttft[ok], 50) / 1e6) if ok.any() else float("nan"),
        "ttft_p99_ms": float(np.percentile(ttft[ok], 99) / 1e6) if ok.any() else float("nan"),
        "lateness_p50_ms": float(np.percentile(late, 50) / 1e6),
        "lateness_p99_ms": float(np.percentile(late, 99) / 1e6),
        "errors": len(errs),
        "first_error": errs[0] if errs else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--qps", type=float, default=500.0)
    ap.add_argument("--overload-qps", type=float, default=0.0, help="0 = 3x the measured closed-loop rate")
    ap.add_argument("--overload-inflight", type=int, default=256)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--shards", action="store_true", help="also run the full raybench path on Ray with 1 and 2 shards")
    args = ap.parse_args()

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[1], cpus[0]) if len(cpus) >= 2 else (None, None)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(q, server_cpu), daemon=True)
    proc.start()
    try:
        port = q.get(timeout=30)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        url = f"http://127.0.0.1:{port}"
        print(f"instant server pid {proc.pid} on cpu {server_cpu}, client on cpu {client_cpu}, "
              f"{N_TOKENS} tokens/response, {args.seconds:.0f} s per measurement")
        rb = asyncio.run(closed_loop_raybench(url, args.concurrency, args.seconds))
        print(f"closed loop c={args.concurrency}  raybench OpenAIEndpointSUT : {rb['req_s']:8.0f} req/s "
              f"({rb['req_s'] * N_TOKENS:.0f} tok/s), errors {rb['errors']}, "
              f"client CPU {rb['cpu_us_per_req']:.1f} us/request")
        if not args.skip_baseline:
            bl = asyncio.run(closed_loop_baseline(url, args.concurrency, args.seconds))
            print(f"closed loop c={args.concurrency}  vLLM-bench-style baseline  : {bl['req_s']:8.0f} req/s, "
                  f"errors {bl['errors']}")
            print(f"ratio raybench / baseline: {rb['req_s'] / bl['req_s']:.2f}x")
        overload = args.overload_qps or round(3 * rb["req_s"], -2)
        for qps, cap in ((args.qps, 1024), (overload, args.overload_inflight)):
            p = asyncio.run(poisson_raybench(url, qps, args.seconds, cap))
            print(f"poisson {qps:6.0f} req/s (max_inflight {cap}): issued {p['issued_qps']:.0f}/s, "
                  f"completed {p['completed_qps']:.0f}/s, TTFT p50 {p['ttft_p50_ms']:.2f} ms "
                  f"p99 {p['ttft_p99_ms']:.2f} ms, lateness p50 {p['lateness_p50_ms']:.2f} ms "
                  f"p99 {p['lateness_p99_ms']:.2f} ms, errors {p['errors']}"
                  + (f" ({p['first_error']})" if p["errors"] else ""))
        if args.shards:
            import ray

            os.sched_setaffinity(0, set(cpus))  # shards are Ray actors: let Ray place them
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
            try:
                for n in (1, 2):
                    r = shards_through_raybench(url, n, args.concurrency, args.seconds)
                    print(f"raybench run on Ray, {n} shard(s), Concurrency {args.concurrency}: {r['req_s']:8.0f} req/s, "
                          f"TTFT p50 {r['ttft_p50_ms']:.2f} ms, errors {r['errors']}  "
                          f"({len(cpus)} cores shared with the server)")
            finally:
                ray.shutdown()
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
