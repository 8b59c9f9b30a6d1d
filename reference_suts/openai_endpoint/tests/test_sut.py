"""OpenAIEndpointSUT against a scripted local server: timings, token counts, every error class.

Server and client share one event loop driven by a :class:`VirtualClock`: loopback I/O is ready
at once and the server's scripted delays are virtual timers, so TTFT, inter-token gaps and
timeouts come out as exactly the scripted numbers, in no real time.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
from array import array
from typing import Any

import pytest

from raybench.core.clock import VirtualClock
from raybench.core.protocols import Query, SUTContext
from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT

from .scripted_server import Script, ScriptedServer

CTX = SUTContext(workload="chat", scenario="Server", mode="PerformanceOnly")
_ids = itertools.count()


CLOCK = VirtualClock()


def q(sample: Any) -> Query:
    return Query(id=next(_ids), indices=[0], samples=[sample], clock=CLOCK)


async def run_one(sut: OpenAIEndpointSUT, sample: Any) -> tuple[Any, Query, int, int]:
    query = q(sample)
    t0 = CLOCK.now_ns()
    [resp] = await sut.issue(query)
    t1 = CLOCK.now_ns()
    return resp, query, t0, t1


def ms(ns: int) -> float:
    return ns / 1e6


def test_streaming_completions_ttft_tpot_and_tokens() -> None:
    script = Script(chunks=["A", "B", "C", "D", "E"], ttft_ms=50, itl_ms=10, usage=5)

    async def main() -> None:
        async with ScriptedServer({"five": script}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "connections": 2})
            await sut.start(CTX)
            resp, query, t0, t1 = await run_one(sut, {"prompt": "five"})
            await sut.stop()
            req = srv.requests[0]
        assert resp.error is None
        assert resp.data == b"ABCDE" and resp.n_tokens == 5
        ttft = ms(query.first_token_ns - t0)
        assert ttft == 50.0, ttft
        assert query.token_ns is not None and len(query.token_ns) == 5
        itl = [ms(b - a) for a, b in zip(query.token_ns, query.token_ns[1:], strict=False)]
        assert itl == [10.0] * 4, itl
        assert ms(t1 - t0) == 90.0  # the last chunk, then usage and [DONE] at once
        tpot = (ms(t1 - t0) - ttft) / (resp.n_tokens - 1)  # LoadGen's definition
        assert tpot == 10.0, tpot
        assert query.extra["finish_reason"] == "length" and query.extra["prompt_tokens"] == 3
        assert req == {
            "model": "scripted-model",  # discovered from GET /v1/models
            "max_tokens": 128,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "prompt": "five",
        }

    CLOCK.run(main())


def test_chat_ttft_starts_at_first_non_empty_delta() -> None:
    script = Script(chunks=["", "Hi", "!"], ttft_ms=30, itl_ms=20, usage=None)

    async def main() -> None:
        async with ScriptedServer({"hi": script}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url + "/v1/"], "api": "chat", "model": "m", "max_tokens": 7})
            await sut.start(CTX)
            resp, query, t0, _ = await run_one(sut, {"messages": [{"role": "user", "content": "hi"}]})
            await sut.stop()
            req = srv.requests[0]
        assert resp.error is None and resp.data == b"Hi!"
        assert resp.n_tokens == 2  # no usage: counted non-empty chunks
        ttft = ms(query.first_token_ns - t0)
        assert ttft == 50.0, ttft  # 30 ms to the empty delta, 20 ms more to "Hi"
        assert query.token_ns is not None and [ms(t - t0) for t in query.token_ns] == [50.0, 70.0]
        assert req["messages"] == [{"role": "user", "content": "hi"}] and req["max_tokens"] == 7

    CLOCK.run(main())


ERRORS = {
    "http503": (Script(status=503, body="overloaded,\n  retry later"), "http 503: overloaded, retry later"),
    "http400": (Script(status=400, body='{"error": {"message": "bad max_tokens"}}'),
                'http 400: {"error": {"message": "bad max_tokens"}}'),
    "reset": (Script(chunks=["a"], fail="reset"), "truncated stream after 1 event: connection closed"),
    "hang": (Script(chunks=["a"], fail="hang"), "timeout after 0.3s"),
    "bad_sse": (Script(chunks=["a"], fail="bad_sse"), "malformed sse: unexpected line 'this is not sse'"),
    "bad_json": (Script(chunks=["a"], fail="bad_json"), "malformed JSON in SSE event: '{not json'"),
    "error_event": (Script(chunks=["a"], fail="error_event"), "server error: engine died"),
    "no_done": (Script(chunks=["a"], fail="no_done"), "truncated stream after 2 events: ended without [DONE]"),
}


def test_every_error_class_becomes_a_reason() -> None:
    async def main() -> dict[str, str | None]:
        scripts = {k: s for k, (s, _) in ERRORS.items()} | {"ok": Script(chunks=["fine"])}
        async with ScriptedServer(scripts) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "timeout_s": 0.3, "connections": 1})
            await sut.start(CTX)
            out = {}
            for key in ERRORS:
                resp, _, t0, t1 = await run_one(sut, key)
                assert resp.data == b"" and resp.n_tokens == 0
                assert ms(t1 - t0) == (300.0 if key == "hang" else 0.0), key  # the timeout is the only wait
                out[key] = resp.error
            # the pool still works after every failure
            ok, _, _, _ = await run_one(sut, "ok")
            assert ok.error is None and ok.data == b"fine"
            await sut.stop()
        return out

    got = CLOCK.run(main())
    for key, (_, reason) in ERRORS.items():
        assert got[key] is not None and got[key].startswith(reason), (key, got[key])
    assert got["hang"] == "timeout after 0.3s"


def test_connect_failures() -> None:
    async def main() -> None:
        async with ScriptedServer({"x": Script()}) as srv:
            url = srv.url
        sut = OpenAIEndpointSUT({"urls": [url], "model": "m", "connections": 1})
        with pytest.raises(RuntimeError, match=f"cannot reach {url}"):
            await sut.start(CTX)
        sut = OpenAIEndpointSUT({"urls": [url], "model": "m", "connections": 0})
        await sut.start(CTX)
        resp, _, _, _ = await run_one(sut, "x")
        await sut.stop()
        assert resp.error is not None and resp.error.startswith("connect failed: "), resp.error

    CLOCK.run(main())


def test_api_key_from_env_is_sent_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-SECRET-123"
    monkeypatch.setenv("RAYBENCH_TEST_KEY", key)
    scripts = {"ok": Script(chunks=["x"]), "deny": Script(status=401, body=f"Incorrect API key provided: {key}.")}

    async def main() -> None:
        async with ScriptedServer(scripts) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "api_key_env": "RAYBENCH_TEST_KEY", "connections": 1})
            before = pickle.dumps(sut)
            await sut.start(CTX)
            ok, _, _, _ = await run_one(sut, "ok")
            deny, _, _, _ = await run_one(sut, "deny")
            shown = repr(sut) + str(sut) + repr(sut.params) + repr(vars(sut)) + repr(sut._client)
            await sut.stop()
        assert ok.error is None
        assert all(h["Authorization"] == f"Bearer {key}" for h in srv.headers)
        assert deny.error == "http 401: Incorrect API key provided: ***."
        assert key not in shown and "api_key='***'" in shown
        assert key.encode() not in before

    CLOCK.run(main())
    with pytest.raises(ValueError, match="api_key_env"):
        OpenAIEndpointSUT({"api_key": key})
    monkeypatch.delenv("RAYBENCH_TEST_KEY")
    with pytest.raises(RuntimeError, match="RAYBENCH_TEST_KEY is not set"):
        CLOCK.run(OpenAIEndpointSUT({"api_key_env": "RAYBENCH_TEST_KEY"}).start(CTX))


def test_token_ids_usage_and_fallback_counts() -> None:
    scripts = {
        "ids": Script(chunks=["a", "bc", "d"], token_ids=[[1], [2, 3], [4]], usage=4),
        "nousage": Script(chunks=["a", "", "b", "c"], usage=None),
    }

    async def main() -> tuple[Any, Any, Any]:
        async with ScriptedServer(scripts) as srv:
            ids = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "response_format": "token_ids"})
            await ids.start(CTX)
            r_ids, _, _, _ = await run_one(ids, [101, 102])
            r_missing, _, _, _ = await run_one(ids, "nousage")
            await ids.stop()
            text = OpenAIEndpointSUT({"urls": [srv.url], "model": "m"})
            await text.start(CTX)
            r_text, _, _, _ = await run_one(text, "nousage")
            await text.stop()
            assert srv.requests[0]["prompt"] == [101, 102]
        return r_ids, r_missing, r_text

    r_ids, r_missing, r_text = CLOCK.run(main())
    assert array("i", r_ids.data).tolist() == [1, 2, 3, 4] and r_ids.n_tokens == 4
    assert r_missing.error is not None and r_missing.error.startswith("response_format token_ids: server sent no")
    assert r_text.data == b"abc" and r_text.n_tokens == 3


def test_non_streaming_and_bad_samples() -> None:
    async def main() -> None:
        async with ScriptedServer({"ok": Script(chunks=["x", "y"])}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "stream": False})
            await sut.start(CTX)
            resp, query, _, _ = await run_one(sut, {"prompt": "ok", "max_tokens": 3})
            bad, _, _, _ = await run_one(sut, {"text": "no prompt"})
            chat_ids = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "api": "chat"})
            await chat_ids.start(CTX)
            bad2, _, _, _ = await run_one(chat_ids, [1, 2])
            await chat_ids.stop()
            await sut.stop()
            assert "stream" not in srv.requests[0] and srv.requests[0]["max_tokens"] == 3
        assert resp.error is None and resp.data == b"xy" and resp.n_tokens == 2
        assert query.first_token_ns == 0 and query.token_ns is None
        assert bad.error == "bad sample: payload has neither 'prompt' nor 'messages'"
        assert bad2.error == "bad sample: token-id prompts need api: completions"

    CLOCK.run(main())


def test_pool_is_prewarmed_and_reused_and_inflight_is_capped() -> None:
    script = Script(chunks=["z"], ttft_ms=40)

    async def main() -> None:
        async with ScriptedServer({"z": script}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "connections": 4, "max_inflight": 2})
            await sut.start(CTX)
            assert sut._client is not None
            pool = sut._client.pools[0]
            assert pool.opened == 4 and len(pool.idle) == 4  # four sockets opened in start()
            t0 = CLOCK.now_ns()
            resps = await asyncio.gather(*(sut.issue(q("z")) for _ in range(6)))
            elapsed = ms(CLOCK.now_ns() - t0)
            assert pool.opened == 4 and len(pool.idle) == 4  # ... and reused, none opened later
            await sut.stop()
        assert len(set(srv.peers)) == 2  # LIFO reuse: two sockets carried all six requests
        assert srv.max_active == 2
        assert elapsed == 120.0  # 6 requests, 2 at a time, 40 ms each
        assert all(r[0].error is None for r in resps)

    CLOCK.run(main())


def test_stale_pooled_socket_is_retried_on_a_fresh_one() -> None:
    async def main() -> None:
        async with ScriptedServer({"a": Script(chunks=["ok"])}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "connections": 1})
            await sut.start(CTX)
            assert sut._client is not None
            pool = sut._client.pools[0]
            # Pretend the server closed the idle socket without our protocol noticing yet.
            stale = pool.idle[0]
            assert stale.transport is not None
            stale.transport.get_extra_info("socket").shutdown(2)  # type: ignore[union-attr]
            resp, _, _, _ = await run_one(sut, "a")
            await sut.stop()
        assert resp.error is None and resp.data == b"ok"
        assert pool.opened == 2 and srv.posts == 1  # dropped before the write: sent once, elsewhere

    CLOCK.run(main())


def test_several_urls_round_robin_and_least_outstanding() -> None:
    async def main() -> None:
        async with ScriptedServer({"a": Script()}) as s1, ScriptedServer({"a": Script()}) as s2:
            for balance in ("round_robin", "least_outstanding"):
                sut = OpenAIEndpointSUT({"urls": [s1.url, s2.url], "model": "m", "balance": balance})
                await sut.start(CTX)
                for _ in range(4):
                    await run_one(sut, "a")
                assert sut._client is not None
                sut._client._outstanding[:] = [3, 0]
                picks = {sut._client._pick() for _ in range(4)}
                sut._client._outstanding[:] = [0, 0]
                await sut.stop()
                if balance == "least_outstanding":
                    assert picks == {1}
            assert len(s1.requests) == 4 and len(s2.requests) == 4

    CLOCK.run(main())


def test_bad_params_fail_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="^sut\\.params\\.temprature: unknown field$"):
        OpenAIEndpointSUT({"temprature": 0})
    with pytest.raises(ValueError, match="^sut\\.params\\.api: Input should be 'completions' or 'chat'$"):
        OpenAIEndpointSUT({"api": "responses"})
    with pytest.raises(ValueError, match="urls: 'ftp://x' is not an http"):
        OpenAIEndpointSUT({"urls": ["ftp://x"]})


def test_first_token_data_only_when_asked_ids_or_encoded_text() -> None:
    """An accuracy-logged query (``want_token_data``) gets the first chunk as the answer is encoded:
    the chunk's token ids (int32) with ``response_format: token_ids``, its UTF-8 text otherwise."""
    scripts = {"ids": Script(chunks=["ab", "c", "d"], token_ids=[[7, 8], [9], [4]], usage=4),
               "noids": Script(chunks=["xy", "z"], usage=2)}

    class Chars:  # a tokenizer stand-in: one id per character
        @staticmethod
        def encode(text: str, add_special_tokens: bool = True) -> list[int]:
            return [ord(c) for c in text]

    async def main() -> list[Query]:
        out = []
        async with ScriptedServer(scripts) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "response_format": "token_ids"})
            await sut.start(CTX)
            sut._tokenizer = Chars()  # the server sends no ids: the first chunk's text is encoded
            query = Query(id=next(_ids), indices=[0], samples=["noids"], clock=CLOCK, want_token_data=True)
            [resp] = await sut.issue(query)
            await sut.stop()
            assert array("i", resp.data).tolist() == [120, 121, 122]
            assert array("i", query.first_token_data).tolist() == [120, 121]
            for fmt in ("token_ids", "text"):
                sut = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "response_format": fmt})
                await sut.start(CTX)
                for want in (True, False):
                    query = Query(id=next(_ids), indices=[0], samples=[[101, 102]], clock=CLOCK, want_token_data=want)
                    [resp] = await sut.issue(query)
                    assert resp.error is None
                    out.append(query)
                await sut.stop()
        return out

    ids_want, ids_not, text_want, text_not = CLOCK.run(main())
    assert array("i", ids_want.first_token_data).tolist() == [7, 8]
    assert text_want.first_token_data == b"ab"
    assert ids_not.first_token_data is None and text_not.first_token_data is None
    assert all(q.first_token_ns and len(q.token_ns or []) == 3 for q in (ids_want, ids_not, text_want, text_not))
