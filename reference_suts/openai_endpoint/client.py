"""Asyncio client for OpenAI-compatible endpoints: keep-alive pools, SSE streaming, no raises.

One :class:`EndpointClient` owns one keep-alive connection pool per base URL
(:mod:`~reference_suts.openai_endpoint.transport`) and turns one request body into one
:class:`Completion`.

Design choices, each measured or forced by a peer's failure (see ``benchmarks/endpoint_client.py``):

- **Own HTTP/1.1 transport, not aiohttp.** Bodies are parsed inside ``data_received``, so SSE
  events are decoded and timed as bytes arrive, with no task wake-up per read; aiohttp's
  per-request overhead made the client no faster than a vLLM-bench-style loop.
- **Pre-warmed pool.** :meth:`EndpointClient.start` opens ``connections`` sockets per URL
  concurrently, so the first timed requests do not pay TCP setup (the Endpoints client does the
  same since its #202 connection-timeout bug).
- **A request is never sent twice.** A POST is moved to another socket only when it is certain
  that the server never received it; see :meth:`EndpointClient._exchange` for the rule.
- **A cap on requests in flight** (``max_inflight``) so that past capacity requests queue in the
  client instead of opening thousands of sockets (vLLM bench fell to ~200 req/s with thousands of
  failures at 4x capacity). The wait counts in the harness's latency, as it should.
- **Errors are data.** Every failure becomes ``Completion.error`` with its own short reason;
  nothing raises out of :meth:`EndpointClient.request` except cancellation. The reasons:

  - ``connect failed: <strerror>``, ``connect timeout after 10.0s``: no TCP connection;
  - ``connection closed before the response headers``: closed or reset after the request was
    written (not retried: see :meth:`EndpointClient._exchange`);
  - ``malformed HTTP status line: '<line>'``, ``malformed HTTP response: <what>``;
  - ``http 302 redirect to <Location> (redirects are not followed)``: a 3xx not followed (a POST
    follows only 307/308, which keep the method and body; ``follow_redirects=0`` follows none);
  - ``http 307 redirect to <Location>: more than 5 redirects``: the hop limit was reached;
  - ``http 503: <first 200 characters of the body>``: any 4xx/5xx;
  - ``timeout after 30.0s``: ``timeout_s`` elapsed (never retried);
  - ``truncated stream after N events: connection closed`` (dropped mid-stream),
    ``...: ended without [DONE]``, ``...: the last event is incomplete (...)``;
  - ``truncated response body: connection closed after N bytes`` (``stream: false``);
  - ``malformed sse: unexpected line '<line>'``, ``malformed JSON in SSE event: '<payload>'``,
    ``malformed JSON body: <why>`` (``stream: false``);
  - ``server error: <message>``: an ``{"error": ...}`` event or body.

  Every HTTP-status reason starts with ``http `` (``reference_suts/vllm/server.py`` tells
  transport failures from HTTP answers by that prefix).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from .sse import SSEDecoder, SSEError
from .transport import Connection, Exchange, Pool, make_ssl_context

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


_BODY_SHOWN = 200  # characters of an error body kept in the reason string


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
        error: ``None`` on success, else a short reason (module docstring lists them).
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    n_chunks: int = 0
    finish_reason: str | None = None
    error: str | None = None


class _Hooks:
    """Timing callbacks: ``first()`` at the first non-empty delta, ``chunk()`` at every one;
    ``first_data(text, token_ids)`` (before ``first``) gets that first delta's text and its token
    ids (``None`` when the event carried none)."""

    __slots__ = ("chunk", "first", "first_data")

    def __init__(self, first: Callable[[], None] | None, chunk: Callable[[], None] | None,
                 first_data: Callable[[str, list[int] | None], None] | None = None) -> None:
        self.first = first
        self.chunk = chunk
        self.first_data = first_data


class EndpointClient:
    """A keep-alive connection pool over several base URLs, with bounded requests in flight.

    Args:
        urls: base URLs (``http://host:port``; a trailing ``/v1`` is accepted and stripped).
        headers: extra request headers (e.g. ``Authorization``); never logged.
        timeout_s: wall-clock limit for one whole request, connect to last byte.
        connect_timeout_s: limit for opening one TCP connection.
        connections: sockets opened per URL in :meth:`start` (0 = open on demand).
        max_inflight: requests allowed in flight at once (others wait in FIFO order).
        balance: ``"round_robin"`` or ``"least_outstanding"`` across ``urls``.
        keepalive_timeout_s: idle sockets older than this are not reused.
        follow_redirects: redirect hops followed per request (0 = none). A POST follows only
            307/308 (same method and body); a GET also follows 301/302/303.
        proxy: ``"env"`` (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``), ``"none"``, or a proxy URL.
        ca_bundle: PEM file of CAs trusted for ``https://`` (default: the system's).
        verify_tls: ``False`` turns certificate and hostname checks off.

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
        keepalive_timeout_s: float = 60.0,
        follow_redirects: int = 5,
        proxy: str | None = "env",
        ca_bundle: str | None = None,
        verify_tls: bool = True,
    ) -> None:
        if not urls:
            raise ValueError("urls: at least one endpoint URL is required")
        if balance not in ("round_robin", "least_outstanding"):
            raise ValueError(f"balance: expected round_robin|least_outstanding, got {balance!r}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight: must be >= 1, got {max_inflight}")
        self.urls = [normalize_url(u) for u in urls]
        self._headers = {"User-Agent": "raybench", **(headers or {})}
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.connections = int(connections)
        self.max_inflight = int(max_inflight)
        self.balance = balance
        self.keepalive_timeout_s = float(keepalive_timeout_s)
        self.follow_redirects = int(follow_redirects)
        self.proxy = proxy
        self.ca_bundle = ca_bundle
        self.verify_tls = bool(verify_tls)
        self._ssl: ssl.SSLContext | None = None
        self._redirect_pools: dict[str, Pool] = {}
        self._outstanding = [0] * len(self.urls)
        self._rr = itertools.cycle(range(len(self.urls)))
        self._sem: asyncio.Semaphore | None = None
        self.pools: list[Pool] = []
        self._heads: dict[tuple[int, str], bytes] = {}
        self.secrets: tuple[str, ...] = ()
        """Strings scrubbed from every error reason (the API key)."""

    def __repr__(self) -> str:
        return f"EndpointClient(urls={self.urls!r}, max_inflight={self.max_inflight})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the pools and open ``connections`` keep-alive sockets per URL.

        Raises:
            ConnectionError: when an endpoint cannot be reached at all (fail fast, before timing).
        """
        self._sem = asyncio.Semaphore(self.max_inflight)
        try:
            if any(u.startswith("https://") for u in self.urls) or self.ca_bundle or not self.verify_tls:
                self._ssl = make_ssl_context(self.ca_bundle, self.verify_tls)
            self.pools = [self._pool(u) for u in self.urls]
        except ValueError as exc:
            raise ConnectionError(str(exc)) from None
        if self.connections > 0:
            for url, pool in zip(self.urls, self.pools, strict=True):
                try:
                    await pool.warm(self.connections)
                except (OSError, TimeoutError) as exc:
                    self.close_now()
                    via = f" through proxy {pool.proxy.host}:{pool.proxy.port}" if pool.proxy is not None else ""
                    raise ConnectionError(f"cannot reach {url}{via}: {_os_reason(exc)}") from None

    def _pool(self, origin: str) -> Pool:
        if origin.startswith("https://") and self._ssl is None:
            self._ssl = make_ssl_context(self.ca_bundle, self.verify_tls)
        return Pool(origin, connect_timeout_s=self.connect_timeout_s, keepalive_s=self.keepalive_timeout_s,
                    ssl_context=self._ssl, proxy=self.proxy)

    def close_now(self) -> None:
        """Drop every idle socket."""
        for pool in [*self.pools, *self._redirect_pools.values()]:
            pool.close()

    async def close(self) -> None:
        """Close the pools (idempotent)."""
        self.close_now()

    async def get_json(self, path: str) -> Any:
        """GET ``path`` from the first URL and decode JSON (used for model discovery).

        Raises:
            ConnectionError: on any transport, HTTP or JSON error.
        """
        ex = await self._exchange(0, "GET", path, b"", _BodyExchange)
        url = self.urls[0] + path
        if ex.error is not None:
            raise ConnectionError(f"GET {url}: {self._scrub(ex.error)}")
        if ex.status >= 300:
            raise ConnectionError(f"GET {url}: {self._scrub(_http_reason(ex.status, bytes(ex.body), ex.location))}")
        try:
            return loads(bytes(ex.body))
        except ValueError as exc:
            raise ConnectionError(f"GET {url}: malformed JSON body: {exc}") from None

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

    def _head(self, idx: int, method: str, path: str) -> bytes:
        key = (idx, method + path)
        head = self._heads.get(key)
        if head is None:
            head = self._build_head(self.pools[idx], method, path)
            self._heads[key] = head
        return head

    def _build_head(self, pool: Pool, method: str, path: str, credentials: bool = True) -> bytes:
        lines = [f"{method} {pool.target(path)} HTTP/1.1", f"Host: {pool.host_header}"]
        if pool.proxy is not None and pool.proxy.auth and pool.ssl is None:
            lines.append(f"Proxy-Authorization: {pool.proxy.auth}")
        lines += [f"{k}: {v}" for k, v in self._headers.items() if credentials or k.lower() != "authorization"]
        if method == "POST":
            lines.append("Content-Type: application/json")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def request(
        self,
        path: str,
        body: bytes,
        *,
        chat: bool,
        stream: bool = True,
        first: Callable[[], None] | None = None,
        chunk: Callable[[], None] | None = None,
        first_data: Callable[[str, list[int] | None], None] | None = None,
    ) -> Completion:
        """POST ``body`` to ``path`` on one of the URLs and collect the completion.

        Args:
            path: ``/v1/completions`` or ``/v1/chat/completions``.
            body: the JSON request, already serialized.
            chat: whether deltas are chat-shaped (``delta.content``) or text-shaped (``text``).
            stream: whether the body asked for ``stream: true``.
            first: called once, at the first event with a non-empty delta (TTFT).
            chunk: called at every event with a non-empty delta (after ``first``).
            first_data: called once with the first non-empty delta's text and token ids (before
                ``first``); only when the caller wants the first token's data.

        Returns:
            A :class:`Completion`; ``error`` is set instead of raising (cancellation excepted).
        """
        sem = self._sem
        if sem is None:
            return Completion(error="client not started")
        async with sem:
            idx = self._pick()
            self._outstanding[idx] += 1
            try:
                ex = await self._exchange(
                    idx, "POST", path, body, _StreamExchange, chat, stream, _Hooks(first, chunk, first_data)
                )
            finally:
                self._outstanding[idx] -= 1
        out = ex.out
        if ex.error is not None:
            out.error = self._scrub(ex.error)
        return out

    async def _exchange(self, idx: int, method: str, path: str, body: bytes, cls: Any, *args: Any) -> Any:
        """Send one request (following redirects) and wait for its end; never send it twice.

        A redirect is a new request the server asked for: 307/308 repeat the method and body at
        ``Location`` (a POST is re-sent there, once per hop, and only because the server answered
        that it did not process it); a GET also follows 301/302/303. At most
        ``follow_redirects`` hops, all within the one ``timeout_s`` of the request. The API key
        (``Authorization``) goes only to the origin it was configured for, never to another one a
        redirect names.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        pool = first = self.pools[idx]
        head = self._head(idx, method, path)
        url = ""
        hops = 0
        while True:
            ex = await self._send_once(pool, head, body, deadline, cls, args)
            if ex.error is not None and ex.status < 300:
                return ex
            if not (300 <= ex.status < 400) or not ex.location or self.follow_redirects <= 0:
                return ex
            if ex.status not in (307, 308) and not (method == "GET" and ex.status in (301, 302, 303)):
                return ex
            if hops >= self.follow_redirects:
                ex.error = (f"http {ex.status} redirect to {ex.location}: more than "
                            f"{self.follow_redirects} redirect{'s' if self.follow_redirects != 1 else ''}")
                return ex
            hops += 1
            url = urljoin(url or first.origin + first.prefix + path, ex.location)
            u = urlsplit(url)
            if u.scheme not in ("http", "https") or not u.netloc:
                ex.error = f"http {ex.status} redirect to {ex.location}: not an http(s) URL"
                return ex
            origin = f"{u.scheme}://{u.netloc}"
            try:
                pool = self._redirect_pools.get(origin) or self._redirect_pools.setdefault(origin, self._pool(origin))
            except ValueError as exc:
                ex.error = f"http {ex.status} redirect to {ex.location}: {exc}"
                return ex
            target = (u.path or "/") + (f"?{u.query}" if u.query else "")
            head = self._build_head(pool, method, target, credentials=origin == first.origin)

    async def _send_once(self, pool: Pool, head: bytes, body: bytes, deadline: float, cls: Any,
                         args: tuple[Any, ...]) -> Any:
        """Send one request on ``pool`` and wait for its end; never send it twice.

        The retry rule: a request goes to another socket only when it is *certain* that the
        server never received it, which is the case exactly when not one byte of it was written:

        - a pooled socket found closed, reset or readable (EOF, RST, stray bytes) before the write
          is dropped unused (:meth:`Pool.acquire`), and the request takes another socket;
        - the write itself failed at once (reset, broken pipe) on a socket with nothing buffered,
          so the kernel took no byte (:meth:`Connection.send` returns ``False``): one more try.

        Never after a timeout, never after a partial response, and never after a write that
        succeeded, even when the socket then closes without one response byte (a server that
        closed an idle keep-alive socket just as the request arrived looks exactly like one that
        read the request and died): those end as errors, since a POST may not be idempotent and
        a resent one would count twice on the server.
        """
        loop = asyncio.get_running_loop()
        req = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for attempt in (0, 1):
            ex = cls(loop.create_future(), *args)
            try:
                conn, _ = await pool.acquire()
            except TimeoutError:
                ex.error = f"connect timeout after {self.connect_timeout_s:.1f}s"
                return ex
            except OSError as exc:
                ex.error = f"connect failed: {_os_reason(exc)}"
                return ex
            if not conn.send(req, ex):  # not one byte left: certain the server never saw it
                conn.abort()
                if attempt == 0:
                    continue
                ex.error = "connection closed before the request was sent"
                return ex
            timer = loop.call_at(deadline, _expire, conn, ex, f"timeout after {self.timeout_s:.1f}s")
            try:
                await ex.future
            except asyncio.CancelledError:
                conn.abort()
                raise
            finally:
                timer.cancel()
            return ex
        return ex  # pragma: no cover - the loop always returns

    # -- reasons -------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        return text


def _http_reason(status: int, body: bytes, location: str | None = None) -> str:
    """``http 503: <body>``, or for a 3xx ``http 302 redirect to <Location> (...)``."""
    if 300 <= status < 400:
        where = f"redirect to {location}" if location else "redirect without a Location header"
        return f"http {status} {where} (redirects are not followed)"
    shown = " ".join(body.decode("utf-8", "replace").split())[:_BODY_SHOWN]
    return f"http {status}: {shown}"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timeout"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _expire(conn: Connection, ex: Exchange, reason: str) -> None:
    if not ex.future.done():
        conn.ex = None
        conn.abort()
        ex.finish(reason)


class _BodyExchange(Exchange):
    """Collects the whole body (GET /v1/models)."""

    __slots__ = ("body",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        super().__init__(future)
        self.body = bytearray()

    def on_body(self, data: bytes) -> None:
        self.body += data


class _StreamExchange(Exchange):
    """Decodes an OpenAI completion (SSE stream or one JSON body) into a :class:`Completion`."""

    __slots__ = ("body", "chat", "decoder", "done", "events", "hooks", "out", "parts", "stream")

    def __init__(self, future: asyncio.Future[None], chat: bool, stream: bool, hooks: _Hooks) -> None:
        super().__init__(future)
        self.out = Completion()
        self.chat = chat
        self.stream = stream
        self.hooks = hooks
        self.decoder = SSEDecoder()
        self.done = False
        self.events = 0
        self.parts: list[str] = []
        self.body = bytearray()

    def on_body(self, data: bytes) -> None:
        if self.status >= 300 or not self.stream:
            if len(self.body) < (1 << 24):
                self.body += data
            return
        for payload in self.decoder.feed(data):
            self.events += 1
            if self.done:
                continue
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                obj = loads(payload)
            except ValueError:
                raise _Malformed(f"{payload[:60].decode('utf-8', 'replace')!r}") from None
            piece = _apply_event(obj, self.chat, self.out, self.hooks)
            if piece:
                self.parts.append(piece)
            if self.out.error is not None and self.error is None:
                self.error = self.out.error

    def on_end(self) -> None:
        out = self.out
        if self.status >= 300:
            self.error = _http_reason(self.status, bytes(self.body), self.location)
            return
        if not self.stream:
            try:
                out.text = _apply_event(loads(bytes(self.body)), self.chat, out, _NO_HOOKS)
            except (ValueError, _Malformed) as exc:  # orjson's and json's decode errors are ValueErrors
                self.error = f"malformed JSON body: {exc}"
            if out.error is not None and self.error is None:
                self.error = out.error
            return
        out.text = "".join(self.parts)
        if not self.done and self.error is None:
            rest = self.decoder.pending
            why = f"the last event is incomplete ({rest[:60]!r})" if rest else "ended without [DONE]"
            self.error = f"truncated stream after {_events(self.events)}: {why}"

    def lost_reason(self) -> str:
        if self.status >= 300:  # the status is the news; the body is what arrived of it
            return _http_reason(self.status, bytes(self.body), self.location)
        if not self.stream:
            return f"truncated response body: connection closed after {len(self.body)} bytes"
        return f"truncated stream after {_events(self.events)}: connection closed"

    def reason(self, exc: BaseException) -> str:
        if isinstance(exc, _Malformed):
            return f"malformed JSON in SSE event: {exc}"
        if isinstance(exc, SSEError):
            return f"malformed sse: {exc}"
        return f"client error: {type(exc).__name__}: {exc}"


def _events(n: int) -> str:
    return "1 event" if n == 1 else f"{n} events"


_NO_HOOKS = _Hooks(None, None)


class _Malformed(Exception):
    """A JSON payload of the wrong shape (the message says what; the caller adds where)."""


def _apply_event(obj: Any, chat: bool, out: Completion, hooks: _Hooks) -> str:
    """Fold one decoded JSON event into ``out``; return its non-empty delta text (or "").

    A delta is non-empty when it carries visible text, reasoning text or a tool call, matching
    the Endpoints rule that TTFT stops at the first non-empty fragment of any category.
    """
    if type(obj) is not dict:
        raise _Malformed(f"expected an object, got {type(obj).__name__}")
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
            if out.n_chunks == 0 and hooks.first_data is not None:
                hooks.first_data(piece, ids or None)
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
        raise _Malformed(f"no choices/usage/error in {str(obj)[:60]!r}")
    return piece
