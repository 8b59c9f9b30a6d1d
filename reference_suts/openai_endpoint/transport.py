"""A minimal HTTP/1.1 client transport on ``asyncio.Protocol``: keep-alive pools, chunked bodies.

Why not aiohttp: aiohttp spends ~150-250 us of Python per request (request/response objects,
header multidicts, stream readers, one task wake-up per read). At 1000+ streaming requests/s on one
core that alone is the budget, so the client measured no faster than a vLLM-bench-style loop
(``benchmarks/endpoint_client.py``). Here a response is parsed inside ``data_received`` and its
body handed straight to the exchange (SSE decode, JSON, timing hooks) with no await per read,
and a request costs one pre-built ``bytes`` write and one future. The MLPerf Endpoints client
makes the same trade (``httptools`` + its own pool).

Scope, on purpose: HTTP/1.1 (or 1.0) responses with ``Content-Length``, ``chunked`` or
read-until-close bodies, optional TLS (a custom CA bundle, or verification off), an HTTP proxy
(absolute-form requests for ``http://``, a ``CONNECT`` tunnel for ``https://``; see
:func:`resolve_proxy`), no compression (we never send ``Accept-Encoding``), no pipelining (one
exchange per connection at a time). A 3xx is reported with its ``Location``; following it is the
client's decision (``EndpointClient``), since only it knows whether a body may be re-sent.

Failure reasons set here (the exchange adds its own for the body):
``connection closed before the response headers``, ``malformed HTTP status line: '...'``,
``malformed HTTP response: ...`` (bad header, chunk framing, head over 64 KiB).
"""

from __future__ import annotations

import asyncio
import base64
import select
import socket
import ssl as _ssl
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Connection", "Exchange", "Pool", "Proxy", "make_ssl_context", "resolve_proxy"]

_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _LENGTH, _EOF = range(7)
_MAX_HEAD = 64 * 1024
_HTTP1 = b"HTTP/1."
_CLOSED_BEFORE_HEAD = "connection closed before the response headers"


class Exchange:
    """One request/response on a connection; subclasses consume the body.

    Attributes:
        future: resolved (always with ``None``) when the exchange ends, successfully or not.
        status: HTTP status (0 until the head arrives).
        location: the ``Location`` header of a 3xx response (``None`` otherwise).
        error: ``None`` or the failure reason.
    """

    __slots__ = ("error", "future", "location", "status")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.status = 0
        self.location: str | None = None
        self.error: str | None = None

    def on_head(self, status: int) -> None:
        """The status line and headers arrived."""
        self.status = status

    def on_body(self, data: bytes) -> None:
        """A piece of the (de-chunked) body; may raise to abort the exchange."""

    def on_end(self) -> None:
        """The body is complete."""

    def lost_reason(self) -> str:
        """The failure reason when the connection closes after the head, before the body ended."""
        return "truncated response body: connection closed"

    def reason(self, exc: BaseException) -> str:
        """The failure reason for an exception raised by :meth:`on_body`."""
        return f"client error: {type(exc).__name__}: {exc}"

    def finish(self, error: str | None = None) -> None:
        """Record ``error`` (first one wins) and resolve the future."""
        if error is not None and self.error is None:
            self.error = error
        if not self.future.done():
            self.future.set_result(None)


class Connection(asyncio.Protocol):
    """One keep-alive socket, parsing one response at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.ex: Exchange | None = None
        self.closed = False
        self.keep_alive = True
        self.last_used = time.monotonic()
        self.fd = -1
        self._buf = b""
        self._state = _HEAD
        self._remaining = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.ex
        if ex is None:
            return
        self.ex = None
        if self._state == _EOF:
            ex.on_end()
            ex.finish()
            return
        ex.finish(_CLOSED_BEFORE_HEAD if self._state == _HEAD else ex.lost_reason())

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        buf = self._buf + data if self._buf else data
        self._buf = b""
        try:
            while buf:
                st = self._state
                if st == _CHUNK_DATA:
                    n = self._remaining
                    if len(buf) <= n:
                        self._remaining = n - len(buf)
                        ex.on_body(buf)
                        if self._remaining == 0:
                            self._state = _CHUNK_CRLF
                        return
                    ex.on_body(buf[:n])
                    buf = buf[n:]
                    self._state = _CHUNK_CRLF
                elif st == _CHUNK_CRLF:
                    if len(buf) < 2:
                        self._buf = buf
                        return
                    if buf[:2] != b"\r\n":
                        raise _HTTPError("bad chunk terminator")
                    buf = buf[2:]
                    self._state = _CHUNK_SIZE
                elif st == _CHUNK_SIZE:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        self._buf = buf
                        return
                    try:
                        size = int(buf[:i].split(b";", 1)[0], 16)
                    except ValueError:
                        raise _HTTPError(f"bad chunk size {buf[:i][:20]!r}") from None
                    buf = buf[i + 2 :]
                    if size:
                        self._remaining = size
                        self._state = _CHUNK_DATA
                    else:
                        self._state = _TRAILER
                elif st == _HEAD:
                    if not buf.startswith(_HTTP1[: len(buf)]):  # fail at once, not at the close
                        raise _StatusLineError(buf.split(b"\n", 1)[0])
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        if len(buf) > _MAX_HEAD:
                            raise _HTTPError("head over 64 KiB")
                        self._buf = buf
                        return
                    self._head(buf[:i], ex)
                    buf = buf[i + 4 :]
                    if 100 <= ex.status < 200:  # interim (100 Continue, 103 Early Hints): next head
                        self._state = _HEAD
                        continue
                    if self._state == _LENGTH and self._remaining == 0:
                        self._done(ex)
                        return
                elif st == _LENGTH:
                    n = self._remaining
                    ex.on_body(buf[:n] if len(buf) > n else buf)
                    self._remaining = max(0, n - len(buf))
                    if self._remaining == 0:
                        self._done(ex)
                    return
                elif st == _TRAILER:
                    if buf.startswith(b"\r\n"):
                        self._done(ex)
                        return
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        self._buf = buf
                        return
                    self._done(ex)
                    return
                else:  # _EOF: body runs until the server closes
                    ex.on_body(buf)
                    return
        except _StatusLineError as exc:
            shown = exc.args[0][:60].decode("latin-1").rstrip("\r")
            self._fail(ex, f"malformed HTTP status line: {shown!r}")
        except _HTTPError as exc:
            self._fail(ex, f"malformed HTTP response: {exc}")
        except Exception as exc:  # noqa: BLE001 - the exchange turns it into a reason
            self._fail(ex, ex.reason(exc))

    # -- helpers -------------------------------------------------------------------------------

    def _head(self, head: bytes, ex: Exchange) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not _is_status(parts[1]):
            raise _StatusLineError(lines[0])
        status = int(parts[1])
        keep = parts[0] == b"HTTP/1.1"
        length = -1
        chunked = False
        location = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                v = value.strip()
                if not v.isdigit():
                    raise _HTTPError(f"bad Content-Length {v[:20]!r}")
                length = int(v)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.strip().lower()
                keep = v == b"keep-alive" if not keep else v != b"close"
            elif name == b"location":
                location = value.strip()[:8192].decode("latin-1")
        self.keep_alive = keep
        ex.location = location
        if chunked:
            self._state = _CHUNK_SIZE
        elif length >= 0:
            self._state = _LENGTH
            self._remaining = length
        elif status in (204, 304):
            self._state = _LENGTH
            self._remaining = 0
        else:
            self._state = _EOF
            self.keep_alive = False
        ex.on_head(status)

    def _done(self, ex: Exchange) -> None:
        self.ex = None
        self._state = _HEAD
        self._buf = b""
        ex.on_end()
        ex.finish()
        if self.keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.abort()

    def _fail(self, ex: Exchange, reason: str) -> None:
        self.ex = None
        self.abort()
        ex.finish(reason)

    def idle_ok(self) -> bool:
        """Whether this idle socket can carry a request: open, and with nothing to read.

        A socket the server closed or reset while idle is readable (EOF or RST) before the event
        loop has run ``connection_lost``; so are stray bytes. Polling it (one ``poll(0)`` syscall)
        finds such a socket *before* a byte of the next request is written, which is the one
        moment a request can be moved to another socket with certainty that the server never saw
        it (see :meth:`send`).
        """
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        if self.fd >= 0:
            p = select.poll()
            p.register(self.fd, select.POLLIN | select.POLLPRI)
            if p.poll(0):
                return False
        return True

    def send(self, request: bytes, ex: Exchange) -> bool:
        """Write ``request`` and route the response to ``ex``.

        Returns:
            ``False`` when it is certain that not one byte of ``request`` left this process: the
            transport was already closing, or the first ``send()`` of the write failed (a reset
            or broken pipe) on a socket with nothing buffered; ``ex`` is then detached and the
            caller may send the request elsewhere. ``True`` once any byte may have been
            written: from then on the server may have received the request, and it must never
            be sent again.
        """
        tr = self.transport
        if tr is None or self.closed or tr.is_closing():
            self.closed = True
            return False
        unsent = tr.get_write_buffer_size() == 0  # an idle socket has nothing buffered
        self.ex = ex
        self._state = _HEAD
        self._buf = b""
        tr.write(request)
        # A plain socket transport tries send() inside write(); when it fails it closes
        # synchronously and nothing was written. (A TLS transport writes later: never "unsent".)
        if unsent and self.pool.ssl is None and tr.is_closing():
            self.ex = None
            self.closed = True
            return False
        return True

    def abort(self) -> None:
        """Drop the socket now (it is never reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _HTTPError(Exception):
    """The response is not valid HTTP/1.1."""


class _StatusLineError(Exception):
    """The first line of the response is not ``HTTP/1.x NNN ...`` (arg: the line, bytes)."""


def _is_status(code: bytes) -> bool:
    return len(code) == 3 and code.isdigit()


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens, and the ``Proxy-Authorization`` value if its URL had a user."""

    host: str
    port: int
    auth: str | None = None

    def __repr__(self) -> str:  # never show the credentials
        return f"Proxy({self.host}:{self.port}{', auth=***' if self.auth else ''})"


def resolve_proxy(url: str, proxy: str | None = "env") -> Proxy | None:
    """The proxy a request to ``url`` goes through, or ``None`` for a direct connection.

    Args:
        url: the target (``http(s)://host:port/...``).
        proxy: ``"env"`` (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, upper or lower case, read
            with the standard library's rules), ``"none"``/``None`` (direct), or a proxy URL
            ``http://[user:pass@]host:port`` used for every target.

    Raises:
        ValueError: one line naming ``proxy`` (or the environment variable) for a proxy URL that
            is not ``http://host[:port]``.
    """
    if proxy is None or proxy == "none":
        return None
    u = urlsplit(url)
    if proxy == "env":
        env = urllib.request.getproxies_environment()
        chosen = env.get(u.scheme)
        if not chosen:
            return None
        if urllib.request.proxy_bypass_environment(u.hostname or "", env):
            return None
        where = f"{u.scheme.upper()}_PROXY"
    else:
        chosen, where = proxy, "proxy"
    if "://" not in chosen:
        chosen = "http://" + chosen
    p = urlsplit(chosen)
    if p.scheme != "http" or not p.hostname:
        raise ValueError(f"{where}: {p.scheme}://{p.hostname or ''} is not an http://host:port proxy")
    auth = None
    if p.username is not None:
        cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        auth = "Basic " + base64.b64encode(cred).decode("ascii")
    return Proxy(p.hostname, p.port or 80, auth)


def make_ssl_context(ca_bundle: str | None = None, verify: bool = True) -> _ssl.SSLContext:
    """A client TLS context: the system CAs (or ``ca_bundle``, a PEM file), or no verification.

    Raises:
        ValueError: one line naming ``ca_bundle`` when the file cannot be read or holds no
            certificate.
    """
    if not verify:
        ctx = _ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = _ssl.CERT_NONE
        return ctx
    try:
        return _ssl.create_default_context(cafile=ca_bundle) if ca_bundle else _ssl.create_default_context()
    except FileNotFoundError:
        raise ValueError(f"ca_bundle: {ca_bundle}: no such file") from None
    except (OSError, _ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ValueError(f"ca_bundle: {ca_bundle}: not a PEM certificate bundle ({why})") from None


class Pool:
    """Keep-alive connections to one ``scheme://host:port`` (LIFO reuse, idle eviction).

    Args:
        base_url: ``http(s)://host[:port][/prefix]``.
        connect_timeout_s: limit for opening one connection (proxy tunnel and TLS included).
        keepalive_s: idle sockets older than this are not reused.
        ssl_context: for ``https://`` (default: the system CAs, hostname checked).
        proxy: ``"env"``, ``"none"`` or a proxy URL (see :func:`resolve_proxy`).

    Attributes:
        opened: sockets opened so far (a test and a benchmark figure: reuse keeps it flat).
        proxy: the proxy in use, or ``None``.
        origin: ``scheme://host:port`` as given (what redirects are resolved against).
    """

    def __init__(self, base_url: str, *, connect_timeout_s: float, keepalive_s: float,
                 ssl_context: _ssl.SSLContext | None = None, proxy: str | None = "none") -> None:
        u = urlsplit(base_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl: _ssl.SSLContext | None = None
        if u.scheme == "https":
            self.ssl = ssl_context or _ssl.create_default_context()
        self.host_header = u.netloc
        self.origin = f"{u.scheme}://{u.netloc}"
        self.prefix = u.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.proxy = resolve_proxy(base_url, proxy)
        self.idle: list[Connection] = []
        self.opened = 0

    def target(self, path: str) -> str:
        """The request-target for ``path``: origin-form, or absolute-form through an http proxy."""
        if self.proxy is not None and self.ssl is None:
            return f"{self.origin}{self.prefix}{path}"
        return f"{self.prefix}{path}"

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection to send on, and whether it was reused from the pool.

        Raises:
            OSError: when a new connection cannot be opened (``TimeoutError`` on timeout).
        """
        idle = self.idle
        if idle:
            now = time.monotonic()
            while idle:
                c = idle.pop()
                if now - c.last_used < self.keepalive_s and c.idle_ok():
                    return c, True
                c.abort()
        return await self.connect(), False

    async def connect(self) -> Connection:
        """Open a new connection (not placed in the pool): direct, to the proxy, or tunnelled."""
        loop = asyncio.get_running_loop()
        px = self.proxy
        async with asyncio.timeout(self.connect_timeout_s):
            if px is None:
                _, proto = await loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
            elif self.ssl is None:  # plain http through a proxy: absolute-form requests to it
                _, proto = await loop.create_connection(lambda: Connection(self), px.host, px.port)
            else:
                sock = await self._tunnel(loop, px)
                try:
                    _, proto = await loop.create_connection(
                        lambda: Connection(self), sock=sock, ssl=self.ssl, server_hostname=self.host)
                except BaseException:
                    sock.close()
                    raise
        self.opened += 1
        return proto

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, px: Proxy) -> socket.socket:
        """A socket to ``host:port`` through ``CONNECT`` on the proxy (TLS is started on it after).

        Raises:
            ConnectionError: the proxy refused the tunnel (its status line is the message).
        """
        infos = await loop.getaddrinfo(px.host, px.port, type=socket.SOCK_STREAM)
        last: OSError = ConnectionError(f"proxy {px.host}:{px.port}: no address")
        sock = None
        for family, type_, proto, _, addr in infos:
            s = socket.socket(family, type_, proto)
            s.setblocking(False)
            try:
                await loop.sock_connect(s, addr)
            except OSError as exc:
                s.close()
                last = exc
                continue
            sock = s
            break
        if sock is None:
            raise last
        try:
            authority = f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"
            head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
            if px.auth:
                head += f"Proxy-Authorization: {px.auth}\r\n"
            await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = await loop.sock_recv(sock, 4096)
                if not data:
                    raise ConnectionError(f"proxy {px.host}:{px.port} closed the CONNECT tunnel to {authority}")
                buf += data
                if len(buf) > _MAX_HEAD:
                    raise ConnectionError(f"proxy {px.host}:{px.port}: CONNECT answer over 64 KiB")
            line = buf.split(b"\r\n", 1)[0]
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(_HTTP1) or parts[1][:1] != b"2":
                shown = line[:80].decode("latin-1")
                raise ConnectionError(f"proxy {px.host}:{px.port} refused CONNECT {authority}: {shown}")
            if buf.index(b"\r\n\r\n") + 4 != len(buf):  # the server cannot have spoken yet
                raise ConnectionError(f"proxy {px.host}:{px.port}: bytes after the CONNECT answer")
        except BaseException:
            sock.close()
            raise
        return sock

    def release(self, conn: Connection) -> None:
        """Return a healthy connection for reuse."""
        conn.last_used = time.monotonic()
        self.idle.append(conn)

    async def warm(self, n: int) -> None:
        """Open ``n`` connections concurrently and park them in the pool."""
        conns = await asyncio.gather(*(self.connect() for _ in range(n)))
        for c in conns:
            self.release(c)

    def close(self) -> None:
        """Drop every idle connection."""
        for c in self.idle:
            c.abort()
        self.idle.clear()
