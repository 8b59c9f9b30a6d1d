"""A local OpenAI-compatible server that streams scripted chunks with scripted delays.

Tests start it on 127.0.0.1 with a random port inside their own event loop. The request's prompt
(or last chat message) names the script to play, so one server serves every case of a test.

Example:
    >>> async with ScriptedServer({"ok": Script(chunks=["a", "b"], ttft_ms=50)}) as srv:
    ...     ...  # POST srv.url + "/v1/completions" with {"prompt": "ok", "stream": true}
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Script", "ScriptedServer"]


@dataclass
class Script:
    """What the server does for one request.

    Attributes:
        chunks: text of the streamed deltas, in order (``""`` makes an empty delta).
        ttft_ms: delay before the first chunk.
        itl_ms: delay between later chunks.
        usage: completion_tokens to report in the final usage chunk (``None``: no usage chunk;
            ``-1``: the number of non-empty chunks).
        token_ids: per-chunk token ids to send in ``choices[0].token_ids`` (vLLM extension).
        status: HTTP status; >= 300 sends ``body`` (and ``location``) instead of a stream.
        body: body for ``status >= 300``.
        location: ``Location`` header for a 3xx.
        raw: bytes written verbatim instead of a response once the request is read, then the
            socket is closed (``b""``: close without sending a byte).
        finish_reason: ``finish_reason`` of the last chunk (and of a non-streamed answer).
        prompt_tokens: ``usage.prompt_tokens`` to report.
        fail: ``None`` or one of ``"reset"`` (drop the socket after the chunks), ``"hang"``
            (stall after the chunks), ``"hang_head"`` (stall before the response head),
            ``"bad_sse"``, ``"bad_json"``, ``"error_event"``, ``"no_done"`` (end the body
            without ``[DONE]``).
    """

    chunks: list[str] = field(default_factory=lambda: ["Hello", " world"])
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    usage: int | None = -1
    token_ids: list[list[int]] | None = None
    status: int = 200
    body: str = ""
    location: str | None = None
    raw: bytes | None = None
    fail: str | None = None
    finish_reason: str = "length"
    prompt_tokens: int = 3


class ScriptedServer:
    """aiohttp server playing :class:`Script` s; records every request it receives."""

    def __init__(self, scripts: dict[str, Script], default: str | None = None) -> None:
        self.scripts = scripts
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.posts = 0  # POSTs whose head reached a handler (counted before the body is read)
        self.headers: list[dict[str, str]] = []
        self.peers: list[tuple[str, int]] = []  # client (host, port) of every POST
        self.model_peers: list[tuple[str, int]] = []  # ... and of every GET /v1/models
        self.active = 0
        self.max_active = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.model_peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.json_response({"object": "list", "data": [{"id": "scripted-model"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._play(request)
        except ConnectionResetError:  # the client hung up (after an error event, a timeout...)
            return web.Response(status=499)
        finally:
            self.active -= 1

    async def _play(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        req = await request.json()
        self.requests.append(req)
        self.headers.append(dict(request.headers))
        chat = request.path.endswith("/chat/completions")
        if chat:
            key = req["messages"][-1]["content"]
            if not isinstance(key, str):  # multi-part content (text + image_url): the default script
                key = self.default or ""
        else:
            key = req["prompt"] if isinstance(req["prompt"], str) else "ids"
        script = self.scripts.get(key) or self.scripts[self.default or key]
        if script.raw is not None:
            assert request.transport is not None
            request.transport.write(script.raw)
            request.transport.close()
            raise ConnectionResetError  # nothing more to send: _handle answers for the log only
        if script.fail == "hang_head":
            await self._closing.wait()
        if script.status >= 300:
            headers = {"Location": script.location} if script.location else None
            return web.Response(status=script.status, text=script.body, headers=headers)
        if not req.get("stream"):
            text = "".join(script.chunks)
            choice = {"index": 0, "finish_reason": script.finish_reason}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            n = sum(1 for c in script.chunks if c)
            return web.json_response({"choices": [choice], "usage": {"prompt_tokens": script.prompt_tokens, "completion_tokens": n}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(script.ttft_ms / 1000)
        for i, text in enumerate(script.chunks):
            if i:
                await asyncio.sleep(script.itl_ms / 1000)
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {"content": text}
            else:
                choice["text"] = text
            if script.token_ids is not None:
                choice["token_ids"] = script.token_ids[i]
            if i == len(script.chunks) - 1:
                choice["finish_reason"] = script.finish_reason
            await resp.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
        if script.fail == "reset":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if script.fail == "hang":
            await self._closing.wait()
        if script.fail == "bad_sse":
            await resp.write(b"this is not sse\n\n")
        if script.fail == "bad_json":
            await resp.write(b"data: {not json\n\n")
        if script.fail == "error_event":
            await resp.write(b'data: {"error": {"message": "engine died", "code": 500}}\n\n')
        if script.usage is not None:
            n = sum(1 for c in script.chunks if c) if script.usage < 0 else script.usage
            usage = {"prompt_tokens": script.prompt_tokens, "completion_tokens": n,
                     "total_tokens": script.prompt_tokens + n}
            await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        if script.fail != "no_done":
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
