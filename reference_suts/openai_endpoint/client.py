"""Asyncio HTTP client for OpenAI-compatible endpoints: keep-alive pool, SSE streaming, no raises.

One :class:`EndpointClient` owns one ``aiohttp.ClientSession`` (one keep-alive connection pool)
over one or more base URLs, and turns one request body into one :class:`Completion`.

Design choices, each measured or forced by a peer's failure (see ``benchmarks/endpoint_client.py``):

- **Pre-warmed pool.** :meth:`EndpointClient.start` opens ``connections`` sockets per URL with
  concurrent ``GET /v1/models`` calls, so the first timed requests do not pay TCP setup (the
  Endpoints client does the same, paced, since its #202 connection-timeout bug).
- **Chunk-wise SSE.** The body is read with ``readany()`` (one await per socket read, not per
  line) and split by :class:`~reference_suts.openai_endpoint.sse.SSEDecoder`; the read buffer is
  1 MiB because aiohttp's 64 KiB default collapsed vLLM bench at long contexts (vllm#39963).
- **A cap on requests in flight** (``max_inflight``) so that past capacity requests queue in the
  client instead of opening thousands of sockets (vLLM bench fell to ~200 req/s with thousands of
  failures at 4x capacity). The wait counts in the harness's latency, as it should.
- **Errors are data.** Every failure (HTTP status, reset, timeout, malformed SSE/JSON, error
  event) becomes ``Completion.error`` with a short reason; nothing raises out of
  :meth:`EndpointClient.request` except cancellation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .sse import SSEDecoder, SSEError

__all__ = ["Completion", "EndpointClient", "dumps", "loads", "normalize_url"]

try:  # orjson is ~5x faster than json on these small objects; optional.
    import orjson as _orjson

    loads: Callable[[bytes], Any] = _orjson.loads

    def dumps(obj: Any) -> bytes:
        """Serialize ``obj`` to compact JSON bytes."""
        return _orjson.dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads

    def dumps(obj: Any) -> bytes:
        """Serialize ``obj`` to compact JSON bytes."""
        return json.dumps(obj, separators=(",", ":")).encode()


_BODY_SHOWN = 160  # characters of an error body kept in the reason string


def normalize_url(url: str) -> str:
    """``http://h:8000/v1/`` -> ``http://h:8000`` (paths are added per request).

    Raises:
        ValueError: when the URL is not http(s).
    """
    u = url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        raise ValueError(f"urls: {url!r} is not an http(s) URL")
    if u.endswith("/v1"):
        u = u[:-3]
    return u


@dataclass(slots=True)
class Completion:
    """What came back for one request.

    Attributes:
        text: generated text (all non-empty deltas concatenated).
        token_ids: generated token ids when the server sent them (vLLM ``return_token_ids``).
        completion_tokens: ``usage.completion_tokens`` from the server, if it sent usage.
        prompt_tokens: ``usage.prompt_tokens``, if sent.
        n_chunks: number of events that carried a non-empty delta.
        finish_reason: the last non-null ``finish_reason``.
        error: ``None`` on success, else a short reason (``"http 503: ..."``, ``"timeout ..."``).
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    n_chunks: int = 0
    finish_reason: str | None = None
    error: str | None = None


class _Hooks:
    """Timing callbacks: ``first()`` at the first non-empty delta, ``chunk()`` at every one."""

    __slots__ = ("chunk", "first")

    def __init__(self, first: Callable[[], None] | None, chunk: Callable[[], None] | None) -> None:
        self.first = first
        self.chunk = chunk


class EndpointClient:
    """A keep-alive connection pool over several base URLs, with bounded requests in flight.

    Args:
        urls: base URLs (``http://host:port``; a trailing ``/v1`` is accepted and stripped).
        headers: extra request headers (e.g. ``Authorization``); never logged.
        timeout_s: wall-clock limit for one whole request, connect to last byte.
        connect_timeout_s: limit for opening one TCP connection.
        connections: sockets opened per URL in :meth:`start` (0 = none).
        max_inflight: requests allowed in flight at once (others wait in FIFO order).
        balance: ``"round_robin"`` or ``"least_outstanding"`` across ``urls``.
        read_bufsize: aiohttp read buffer per response.

    Example:
        >>> client = EndpointClient(["http://127.0.0.1:8000"])  # doctest: +SKIP
        >>> await client.start(); c = await client.request("/v1/completions", body, chat=False)
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        connections: int = 0,
        max_inflight: int = 1024,
        balance: str = "least_outstanding",
        read_bufsize: int = 1 << 20,
        keepalive_timeout_s: float = 60.0,
    ) -> None:
        if not urls:
            raise ValueError("urls: at least one endpoint URL is required")
        if balance not in ("round_robin", "least_outstanding"):
            raise ValueError(f"balance: expected round_robin|least_outstanding, got {balance!r}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight: must be >= 1, got {max_inflight}")
        self.urls = [normalize_url(u) for u in urls]
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.connections = int(connections)
        self.max_inflight = int(max_inflight)
        self.balance = balance
        self.read_bufsize = int(read_bufsize)
        self.keepalive_timeout_s = float(keepalive_timeout_s)
        self._outstanding = [0] * len(self.urls)
        self._rr = itertools.cycle(range(len(self.urls)))
        self._sem: asyncio.Semaphore | None = None
        self._session: Any = None
        self._aiohttp: Any = None
        self.secrets: tuple[str, ...] = ()
        """Strings scrubbed from every error reason (the API key)."""

    def __repr__(self) -> str:
        return f"EndpointClient(urls={self.urls!r}, max_inflight={self.max_inflight})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the session and open ``connections`` keep-alive sockets per URL.

        Raises:
            ConnectionError: when an endpoint cannot be reached at all (fail fast, before timing).
        """
        import aiohttp

        self._aiohttp = aiohttp
        self._sem = asyncio.Semaphore(self.max_inflight)
        per_host = max(self.connections, 1)
        connector = aiohttp.TCPConnector(
            limit=max(self.max_inflight, per_host * len(self.urls)),
            limit_per_host=0,
            keepalive_timeout=self.keepalive_timeout_s,
            ttl_dns_cache=None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            read_bufsize=self.read_bufsize,
            auto_decompress=False,
        )
        if self.connections > 0:
            await asyncio.gather(*(self._warm(u) for u in self.urls))

    async def _warm(self, url: str) -> None:
        async def one() -> None:
            try:
                async with self._session.get(url + "/v1/models", headers=self._headers) as r:
                    await r.read()
            except (OSError, self._aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise ConnectionError(f"cannot reach {url}: {self._scrub(str(exc))}") from None

        await asyncio.gather(*(one() for _ in range(self.connections)))

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str) -> Any:
        """GET ``path`` from the first URL and decode JSON (used for model discovery).

        Raises:
            ConnectionError: on any transport or HTTP error.
        """
        url = self.urls[0] + path
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.get(url, headers=self._headers) as r:
                    body = await r.read()
                    if r.status >= 400:
                        raise ConnectionError(f"GET {url}: {self._http_reason(r.status, body)}")
                    return loads(body)
        except (OSError, self._aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            if isinstance(exc, ConnectionError):
                raise
            raise ConnectionError(f"GET {url}: {self._scrub(str(exc)) or type(exc).__name__}") from None

    # -- one request ---------------------------------------------------------------------------

    def _pick(self) -> int:
        if len(self.urls) == 1:
            return 0
        if self.balance == "round_robin":
            return next(self._rr)
        out = self._outstanding
        start = next(self._rr)  # rotate the tie-break so equal loads still spread
        best = start
        n = len(out)
        for k in range(1, n):
            i = (start + k) % n
            if out[i] < out[best]:
                best = i
        return best

    async def request(
        self,
        path: str,
        body: bytes,
        *,
        chat: bool,
        stream: bool = True,
        first: Callable[[], None] | None = None,
        chunk: Callable[[], None] | None = None,
    ) -> Completion:
        """POST ``body`` to ``path`` on one of the URLs and collect the completion.

        Args:
            path: ``/v1/completions`` or ``/v1/chat/completions``.
            body: the JSON request, already serialized.
            chat: whether deltas are chat-shaped (``delta.content``) or text-shaped (``text``).
            stream: whether the body asked for ``stream: true``.
            first: called once, at the first event with a non-empty delta (TTFT).
            chunk: called at every event with a non-empty delta (after ``first``).

        Returns:
            A :class:`Completion`; ``error`` is set instead of raising.
        """
        out = Completion()
        sem = self._sem
        if sem is None:
            out.error = "client not started"
            return out
        async with sem:
            idx = self._pick()
            self._outstanding[idx] += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._send(self.urls[idx] + path, body, chat, stream, _Hooks(first, chunk), out)
            except TimeoutError as exc:
                if isinstance(exc, self._aiohttp.ConnectionTimeoutError):
                    out.error = f"connect timeout after {self.connect_timeout_s:.1f}s"
                else:
                    out.error = f"timeout after {self.timeout_s:.1f}s"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure must become a reason
                out.error = self._scrub(self._reason(exc))
            finally:
                self._outstanding[idx] -= 1
        return out

    async def _send(
        self, url: str, body: bytes, chat: bool, stream: bool, hooks: _Hooks, out: Completion
    ) -> None:
        async with self._session.post(url, data=body, headers=self._headers) as resp:
            if resp.status >= 400:
                out.error = self._http_reason(resp.status, await resp.read())
                return
            if not stream:
                out.text = _apply_event(loads(await resp.read()), chat, out, _NO_HOOKS)
                return
            decoder = SSEDecoder()
            content = resp.content
            done = False
            parts: list[str] = []
            while True:
                data = await content.readany()
                if not data:
                    break
                for payload in decoder.feed(data):
                    if done:
                        continue
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        obj = loads(payload)
                    except ValueError:
                        shown = payload[:60].decode("utf-8", "replace")
                        raise _Malformed(f"malformed json: {shown!r}") from None
                    piece = _apply_event(obj, chat, out, hooks)
                    if piece:
                        parts.append(piece)
                    if out.error is not None:
                        return
            out.text = "".join(parts)
            if not done:
                rest = decoder.pending
                if rest:
                    raise _Malformed(f"malformed sse: truncated event {rest[:60]!r}")
                raise _Malformed("truncated stream: ended without [DONE]")

    # -- reasons -------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        return text

    def _http_reason(self, status: int, body: bytes) -> str:
        shown = " ".join(body.decode("utf-8", "replace").split())[:_BODY_SHOWN]
        return self._scrub(f"http {status}: {shown}")

    def _reason(self, exc: BaseException) -> str:
        aiohttp = self._aiohttp
        if isinstance(exc, _Malformed):
            return str(exc)
        if isinstance(exc, SSEError):
            return f"malformed sse: {exc}"
        if isinstance(exc, ValueError):
            return f"malformed json: {exc}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"connect failed: {exc.os_error or exc}"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "connection reset: server disconnected"
        if isinstance(exc, aiohttp.ClientPayloadError | ConnectionResetError | BrokenPipeError):
            return f"connection reset: {exc}"
        if isinstance(exc, aiohttp.ClientError | OSError):
            return f"transport error: {type(exc).__name__}: {exc}"
        return f"client error: {type(exc).__name__}: {exc}"


_NO_HOOKS = _Hooks(None, None)


class _Malformed(Exception):
    """A response that is not valid SSE/JSON (message is the final reason)."""


def _apply_event(obj: Any, chat: bool, out: Completion, hooks: _Hooks) -> str:
    """Fold one decoded JSON event into ``out``; return its non-empty delta text (or "").

    A delta is non-empty when it carries visible text, reasoning text or a tool call, matching
    the Endpoints rule that TTFT stops at the first non-empty fragment of any category.
    """
    if type(obj) is not dict:
        raise _Malformed(f"malformed json: expected an object, got {type(obj).__name__}")
    piece = ""
    choices = obj.get("choices")
    if choices:
        c = choices[0]
        if chat:
            delta = c.get("delta") or c.get("message") or {}
            piece = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or ""
            if not piece and delta.get("tool_calls"):
                piece = dumps(delta["tool_calls"]).decode()
        else:
            piece = c.get("text") or ""
        ids = c.get("token_ids")
        if ids:
            out.token_ids.extend(ids)
        fr = c.get("finish_reason")
        if fr:
            out.finish_reason = fr
        if piece:
            if out.n_chunks == 0 and hooks.first is not None:
                hooks.first()
            out.n_chunks += 1
            if hooks.chunk is not None:
                hooks.chunk()
    usage = obj.get("usage")
    if usage:
        out.completion_tokens = usage.get("completion_tokens")
        out.prompt_tokens = usage.get("prompt_tokens")
    err = obj.get("error")
    if err:
        msg = err.get("message", err) if isinstance(err, dict) else err
        out.error = f"server error: {' '.join(str(msg).split())[:_BODY_SHOWN]}"
    if "choices" not in obj and not usage and not err:
        raise _Malformed(f"malformed json: no choices/usage/error in {str(obj)[:60]!r}")
    return piece
