"""Every way a request can fail has its own reason, and no failure makes the client POST twice.

Each case runs one request over a *reused* keep-alive socket (``connections=1`` pre-warms it),
the case where a careless retry resends, against the scripted local server, and checks the exact
reason and the number of POSTs the server saw.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import pytest

from reference_suts.openai_endpoint.client import Completion, EndpointClient, dumps

from .scripted_server import Script, ScriptedServer

LONG = "x" * 150 + " " + "y" * 150


@dataclass
class Case:
    script: Script
    reason: str
    stream: bool = True


CASES = {
    "timeout": Case(Script(fail="hang_head"), "timeout after 0.3s"),
    "timeout_mid_stream": Case(Script(chunks=["a"], fail="hang"), "timeout after 0.3s"),
    "closed_before_headers": Case(Script(raw=b""), "connection closed before the response headers"),
    "closed_inside_headers": Case(Script(raw=b"HTTP/1.1 200 OK\r\nContent-Ty"),
                                  "connection closed before the response headers"),
    "redirect": Case(Script(status=302, location="https://other:8000/v1/completions", body="moved"),
                     "http 302 redirect to https://other:8000/v1/completions (redirects are not followed)"),
    "redirect_no_location": Case(Script(status=307),
                                 "http 307 redirect without a Location header (redirects are not followed)"),
    "bad_status_code": Case(Script(raw=b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"),
                            "malformed HTTP status line: 'HTTP/1.1 2OO OK'"),
    "not_http": Case(Script(raw=b"ICY 200 OK\r\n"), "malformed HTTP status line: 'ICY 200 OK'"),
    "bad_content_length": Case(Script(raw=b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"),
                               "malformed HTTP response: bad Content-Length b'ten'"),
    "http_5xx": Case(Script(status=503, body=LONG), f"http 503: {LONG[:200]}"),
    "http_4xx": Case(Script(status=404, body="no such model"), "http 404: no such model"),
    "reset_mid_stream": Case(Script(chunks=["a", "b"], fail="reset"),
                             "truncated stream after 2 events: connection closed"),
    "no_done": Case(Script(chunks=["a", "b"], fail="no_done"),
                    "truncated stream after 3 events: ended without [DONE]"),
    "bad_json_event": Case(Script(chunks=["a"], fail="bad_json"), "malformed JSON in SSE event: '{not json'"),
    "bad_sse": Case(Script(chunks=["a"], fail="bad_sse"), "malformed sse: unexpected line 'this is not sse'"),
    "error_event": Case(Script(chunks=["a"], fail="error_event"), "server error: engine died"),
    "truncated_body": Case(Script(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{\"choices\""),
                           "truncated response body: connection closed after 10 bytes", stream=False),
    "bad_json_body": Case(Script(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{nope"),
                          "malformed JSON body: ", stream=False),
}


async def _one(srv: ScriptedServer, stream: bool, timeout_s: float = 0.3) -> tuple[Completion, EndpointClient]:
    client = EndpointClient([srv.url], timeout_s=timeout_s, connections=1)
    await client.start()
    body = {"model": "m", "prompt": "case", "stream": stream}
    c = await client.request("/v1/completions", dumps(body), chat=False, stream=stream)
    await asyncio.sleep(0.2)  # room for a (wrong) second POST to reach the server
    await client.close()
    return c, client


@pytest.mark.parametrize("name", list(CASES))
def test_each_failure_has_its_reason_and_is_posted_once(name: str) -> None:
    case = CASES[name]

    async def main() -> tuple[Completion, int, int]:
        async with ScriptedServer({"case": case.script}) as srv:
            c, client = await _one(srv, case.stream)
            return c, srv.posts, client.pools[0].opened

    c, posts, opened = asyncio.run(main())
    if case.reason.endswith(": "):  # the JSON decoder's own words follow
        assert c.error is not None and c.error.startswith(case.reason), c.error
    else:
        assert c.error == case.reason
    assert posts == 1, f"{name}: the server received {posts} POSTs"
    assert opened == 1  # the pre-warmed socket carried it; no retry opened another


def test_write_that_fails_at_once_is_retried_on_a_fresh_socket() -> None:
    """The pooled socket looks idle and healthy, but the write itself fails (broken pipe).

    Shutting only our write side leaves nothing to read, so the socket passes the idle check;
    the kernel then refuses the very first ``send()``: not one byte left, so one retry is safe.
    (A socket found readable before the write is covered by ``test_sut.py``'s stale-socket test.)
    """

    async def main() -> tuple[Completion, int, int, bool]:
        async with ScriptedServer({"case": Script(chunks=["ok"])}) as srv:
            client = EndpointClient([srv.url], connections=1)
            await client.start()
            stale = client.pools[0].idle[0]
            assert stale.transport is not None
            stale.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
            passed_idle_check = stale.idle_ok()
            c = await client.request("/v1/completions", dumps({"prompt": "case", "stream": True}), chat=False)
            await client.close()
            return c, srv.posts, client.pools[0].opened, passed_idle_check

    c, posts, opened, passed_idle_check = asyncio.run(main())
    assert passed_idle_check  # so the retry below came from the failed write, not the idle check
    assert c.error is None and c.text == "ok"
    assert posts == 1 and opened == 2


def test_interim_1xx_head_is_skipped() -> None:
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 37\r\nConnection: close\r\n\r\n"
           b'{"choices": [{"text": "hi"}], "x": 1}')
    assert len(raw.split(b"\r\n\r\n")[-1]) == 37

    async def main() -> tuple[Completion, int]:
        async with ScriptedServer({"case": Script(raw=raw)}) as srv:
            c, _ = await _one(srv, stream=False)
            return c, srv.posts

    c, posts = asyncio.run(main())
    assert c.error is None and c.text == "hi" and posts == 1
