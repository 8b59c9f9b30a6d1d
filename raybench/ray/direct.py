"""A direct shard-to-replica channel: an HMAC handshake, then length-prefixed pickle frames over TCP.

A Ray actor call costs a few hundred microseconds to milliseconds of scheduling and object-store
work per query (+2.6 ms measured across nodes), which is most of the budget when a SUT answers in
a millisecond; this channel adds about 0.07 ms. It is the default transport: each SUT replica
listens on a TCP port (127.0.0.1 on a one-node cluster, its node's IP otherwise) and each shard
keeps one connection per replica (over the replica's unix socket when both are on one Ray node:
the same protocol with less kernel work per message). Ray still places, starts, monitors and
kills the actors and hands out the run secret; only the per-query messages bypass it.

Why a handshake: a pickle frame runs code when it is loaded, so whoever can reach the port could
run code inside the replica. Every connection therefore proves, before the server reads a single
payload byte, that it knows the per-run secret the driver gave both ends through Ray:

1. replica → shard: ``MAGIC`` (4 bytes) + server nonce ``Ns`` (32 bytes);
2. shard → replica: client nonce ``Nc`` (32) + ``HMAC-SHA256(secret, CLIENT_CTX || Ns || Nc)`` (32);
   the replica checks it with :func:`hmac.compare_digest` and drops the connection otherwise;
3. replica → shard: ``HMAC-SHA256(secret, SERVER_CTX || Nc || Ns)`` (32); the shard checks it, so a
   shard never loads frames from an impostor that took over a reused port.

The messages have fixed sizes and the whole exchange a deadline (5 s by default), so a silent or
slow peer cannot hold a connection open. The two context strings differ, so one side's proof is
never a valid answer for the other (no reflection), and fresh nonces on both sides make a recorded
handshake useless. Rejected connections are counted (:attr:`DirectServer.rejected_connections`).

After the handshake, frames are ``!IQB`` header (payload length, request id, kind) + pickle
payload; a frame longer than ``max_frame`` (1 GiB) drops the connection. Kinds: request
(``qid, indices, samples, stream``), token event, done (list of Response tuples), error (str).
The peers are authenticated but the bytes are not encrypted or MAC'd per frame: the same trust
level as Ray's own (non-TLS) channels, which also carry pickles and the secret itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import pickle
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable
from typing import Any

from raybench.core.eager import start_eagerly
from raybench.core.protocols import Response

__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "MAX_FRAME",
    "DirectClient",
    "DirectServer",
    "RemoteSUTError",
    "serve_direct",
]

log = logging.getLogger(__name__)

_HDR = struct.Struct("!IQB")
REQ, TOK, DONE, ERR = 0, 1, 2, 3

MAGIC = b"RBD1"  # protocol name and version: a mismatched peer fails at the first 4 bytes
CLIENT_CTX = b"raybench-direct-v1 shard->replica"
SERVER_CTX = b"raybench-direct-v1 replica->shard"
_NONCE = 32
_MAC = hashlib.sha256().digest_size
_MIN_SECRET = 16
HANDSHAKE_TIMEOUT_S = 5.0
#: Largest frame either side accepts; a longer length is a corrupt or hostile stream, not a query.
MAX_FRAME = 1 << 30
#: How many rejected peer addresses a replica keeps (and logs) for the run's message.
MAX_REJECTED_PEERS = 5


class RemoteSUTError(RuntimeError):
    """The SUT raised in the replica; ``fatal`` when it says the replica cannot serve any more."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def _frame(rid: int, kind: int, obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=5)
    return _HDR.pack(len(body), rid, kind) + body


def _proof(secret: bytes, ctx: bytes, first: bytes, second: bytes) -> bytes:
    """HMAC-SHA256 over a context string and two fixed-size nonces (so the input is unambiguous)."""
    return hmac.new(secret, ctx + first + second, hashlib.sha256).digest()


def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes | bytearray) or len(secret) < _MIN_SECRET:
        raise ValueError(f"the direct channel needs a secret of at least {_MIN_SECRET} random bytes")
    return bytes(secret)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) or "a local (unix) socket"


class _Frames(asyncio.Protocol):
    """The framing after the handshake, parsed as bytes arrive (no reader task, no loop turn per frame).

    Installed on the authenticated connection's transport in place of the stream reader; bytes the
    reader had already buffered are parsed first.
    """

    def __init__(self, on_frame: Callable[[int, int, Any], None], on_lost: Callable[[BaseException | None], None],
                 max_frame: int) -> None:
        self._buf = bytearray()
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._max = max_frame
        self.transport: asyncio.Transport | None = None

    def attach(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> tuple[asyncio.Transport, bytes]:
        """Take over the connection; returns its transport and the bytes the reader had buffered.

        The caller passes those bytes to :meth:`data_received` once its frame handlers can write
        to the transport (a request may arrive in the same segment as the handshake's last message).
        """
        transport = writer.transport
        leftover = bytes(reader._buffer)  # noqa: SLF001 - what the stream reader already holds
        reader._buffer.clear()  # noqa: SLF001
        self.transport = transport  # type: ignore[assignment]
        transport.set_protocol(self)
        return transport, leftover  # type: ignore[return-value]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, size, hdr = 0, len(buf), _HDR.size
        while size - pos >= hdr:
            n, rid, kind = _HDR.unpack_from(buf, pos)
            if n > self._max:
                self._buf = bytearray()
                if self.transport is not None:
                    self.transport.close()
                self._on_lost(ConnectionError(f"a {n}-byte frame (limit {self._max})"))
                return
            end = pos + hdr + n
            if end > size:
                break
            payload = pickle.loads(buf[pos + hdr : end]) if n else None
            pos = end
            self._on_frame(rid, kind, payload)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DirectServer:
    """The replica side: authenticates each connection, then runs every request frame as a task.

    Args:
        issue: ``issue(qid, indices, samples, on_token)`` is awaited and returns the responses;
            ``on_token`` (when not None) forwards a token event to the caller.
        secret: the run secret (at least 16 bytes) the shards must prove they know.
        handshake_timeout_s: deadline for the whole handshake of one connection.
        max_frame: largest payload accepted after the handshake.

    Attributes:
        unix_path: with ``start(..., unix=True)``, a unix socket in a fresh private (0700)
            directory that serves the same handshake and frames; shards on the same node use it
            (a loopback TCP message costs about 4 us more CPU per side than a unix socket one).
        rejected_connections: connections dropped before or during the handshake (wrong secret,
            no handshake, silent, closed early); nothing they sent was deserialised.
        rejected_peers: ``host:port`` of the first :data:`MAX_REJECTED_PEERS` of them.
        accepted_connections: connections that completed the handshake.
    """

    def __init__(
        self,
        issue: Callable[[int, list[int], list[Any], Callable[[], None] | None], Any],
        secret: bytes,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._issue = issue
        self._secret = _check_secret(secret)
        self.handshake_timeout_s = handshake_timeout_s
        self.max_frame = max_frame
        self.rejected_connections = 0
        self.rejected_peers: list[str] = []
        self.accepted_connections = 0
        self.host = ""
        self.port = 0
        self.unix_path: str | None = None
        self._server: asyncio.base_events.Server | None = None
        self._unix_server: asyncio.base_events.Server | None = None
        self._conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    def __repr__(self) -> str:  # never show the secret
        return f"DirectServer({self.host}:{self.port}, rejected={self.rejected_connections})"

    async def start(self, host: str, unix: bool = False, unix_dir: str | None = None) -> DirectServer:
        """Listen on ``host`` at a free port (``self.port``) and, with ``unix``, on :attr:`unix_path`
        (in a new directory under ``unix_dir``, the system's temporary directory by default).

        The unix socket is best effort: if it cannot be made (no writable temporary directory,
        a path too long for ``sun_path``), only TCP is served and ``unix_path`` stays None.
        """
        self._server = await asyncio.start_server(self._handle, host, 0)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        if unix:
            await self._start_unix(unix_dir)
        return self

    async def _start_unix(self, parent: str | None) -> None:
        try:
            folder = tempfile.mkdtemp(prefix="raybench-direct-", dir=parent)  # mode 0700: this user only
        except OSError:
            return
        path = os.path.join(folder, "r.sock")
        try:
            if len(os.fsencode(path)) >= 100:  # sun_path holds 108 bytes on Linux, 104 on macOS
                raise OSError(f"socket path too long: {path}")
            self._unix_server = await asyncio.start_unix_server(self._handle, path)
        except OSError as exc:
            log.info("direct channel: no unix socket (%s); shards on this node use TCP", exc)
            shutil.rmtree(folder, ignore_errors=True)
            return
        self.unix_path = path

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._unix_server is not None:
            self._unix_server.close()
            self._unix_server = None
        if self.unix_path is not None:
            shutil.rmtree(os.path.dirname(self.unix_path), ignore_errors=True)
            self.unix_path = None

    def stats(self) -> dict[str, Any]:
        """Plain counters for the run's result (no secret)."""
        return {
            "accepted_connections": self.accepted_connections,
            "rejected_connections": self.rejected_connections,
            "rejected_peers": list(self.rejected_peers),
        }

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        """Run the server half of the handshake; returns why it failed, or None on success."""
        ns = os.urandom(_NONCE)
        writer.write(MAGIC + ns)
        answer = await reader.readexactly(_NONCE + _MAC)
        nc, mac = answer[:_NONCE], answer[_NONCE:]
        if not hmac.compare_digest(mac, _proof(self._secret, CLIENT_CTX, ns, nc)):
            return "wrong handshake proof"
        writer.write(_proof(self._secret, SERVER_CTX, nc, ns))
        await writer.drain()
        return None

    def _reject(self, peer: str, why: str) -> None:
        self.rejected_connections += 1
        if len(self.rejected_peers) < MAX_REJECTED_PEERS:
            self.rejected_peers.append(peer)
            log.warning("direct channel on port %d: dropped an unauthenticated connection from %s (%s)",
                        self.port, peer, why)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            why = await asyncio.wait_for(self._handshake(reader, writer), self.handshake_timeout_s)
        except TimeoutError:
            why = f"no handshake within {self.handshake_timeout_s:g} s"
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            why = f"closed during the handshake ({type(exc).__name__})"
        if why is not None:
            self._reject(peer, why)
            writer.close()
            return
        self.accepted_connections += 1
        _nodelay(writer)
        self._serve(reader, writer, peer)

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        """Answer request frames: each one's handler starts at once; it becomes a task only if it waits."""
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        transport: asyncio.Transport | None = None

        issue = self._issue

        def token_sender(rid: int) -> Callable[[], None]:
            tok = _HDR.pack(0, rid, TOK)
            return lambda: transport.write(tok)  # type: ignore[union-attr]

        async def one(rid: int, qid: int, indices: list[int], samples: list[Any], stream: bool) -> None:
            try:
                resps = await issue(qid, indices, samples, token_sender(rid) if stream else None)
                # Plain tuples pickle several times faster than dataclass instances.
                body = pickle.dumps([(r.data, r.n_tokens, r.error, r.sut_ns, r.n_input_tokens, r.finish_reason)
                                     for r in resps], 5)
                transport.write(_HDR.pack(len(body), rid, DONE) + body)  # type: ignore[union-attr]
            except Exception as exc:  # reported to the shard as this query's error
                fatal = bool(getattr(exc, "fatal", False))
                transport.write(_frame(rid, ERR, (f"{type(exc).__name__}: {exc}", fatal)))  # type: ignore[union-attr]

        def on_frame(rid: int, kind: int, payload: Any) -> None:
            if kind == REQ:
                task = start_eagerly(one(rid, *payload), loop)
                if task is not None:
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

        def on_lost(exc: BaseException | None) -> None:
            if isinstance(exc, ConnectionError) and "limit" in str(exc):
                log.warning("direct channel on port %d: %s sent %s; dropping it", self.port, peer, exc)
            for t in list(tasks):
                t.cancel()
            if transport is not None:
                transport.close()
            self._conns.pop(key, None)

        # The stream objects must outlive this call: a collected StreamWriter closes its transport.
        key = id(writer)
        self._conns[key] = (reader, writer)
        frames = _Frames(on_frame, on_lost, self.max_frame)
        transport, leftover = frames.attach(writer, reader)
        if leftover:
            frames.data_received(leftover)


async def serve_direct(
    host: str,
    issue: Callable[[int, list[int], list[Any], Callable[[], None] | None], Any],
    secret: bytes,
    *,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    max_frame: int = MAX_FRAME,
    unix: bool = False,
    unix_dir: str | None = None,
) -> DirectServer:
    """Start the replica side on ``host`` (a free port; and a unix socket with ``unix``); see :class:`DirectServer`."""
    return await DirectServer(issue, secret, handshake_timeout_s, max_frame).start(host, unix, unix_dir)


class DirectClient:
    """The shard side of one replica connection (many requests in flight, matched by id).

    Args:
        host, port: the replica's listening address (from its ``start()`` info).
        label: names the replica in errors.
        secret: the run secret; the replica must prove it knows it too.
        handshake_timeout_s: deadline for connecting and the whole handshake.
        max_frame: largest payload accepted from the replica.
        unix_path: the replica's unix socket, when this shard runs on the replica's node; tried
            first, with TCP as the fallback when it cannot be reached (the handshake is the same).

    Attributes:
        via: ``"unix"`` or ``"tcp"``, the connection in use after :meth:`connect`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        label: str,
        secret: bytes,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        max_frame: int = MAX_FRAME,
        unix_path: str | None = None,
    ) -> None:
        self.host, self.port, self.label = host, port, label
        self.unix_path = unix_path
        self.via = ""
        self._secret = _check_secret(secret)
        self.handshake_timeout_s = handshake_timeout_s
        self.max_frame = max_frame
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: Any = None  # the connection's loop (set by connect)
        self._pending: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        self._rid = 0
        self.closed_reason: str | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"DirectClient({self.label} at {self.host}:{self.port})"

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await reader.readexactly(len(MAGIC) + _NONCE)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the peer closed before greeting (not a raybench replica?)") from None
        if hello[: len(MAGIC)] != MAGIC:
            raise ConnectionError("not the raybench direct protocol (another process on the port?)")
        ns, nc = hello[len(MAGIC):], os.urandom(_NONCE)
        writer.write(nc + _proof(self._secret, CLIENT_CTX, ns, nc))
        try:
            answer = await reader.readexactly(_MAC)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the peer closed during the handshake (run secret rejected)") from None
        if not hmac.compare_digest(answer, _proof(self._secret, SERVER_CTX, nc, ns)):
            raise ConnectionError("the peer did not prove the run secret (another process on a reused port?)")

    async def connect(self) -> None:
        """Connect and authenticate both ends; nothing the peer sends is unpickled before that.

        Raises:
            ConnectionError: the replica is unreachable, too slow, or failed the handshake.
        """
        where = f"direct channel to {self.label} at {self.host}:{self.port}"
        reader = writer = None
        if self.unix_path:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.unix_path),
                                                        self.handshake_timeout_s)
                where, self.via = f"direct channel to {self.label} at {self.unix_path}", "unix"
            except (OSError, TimeoutError) as exc:
                log.info("%s: unix socket %s unreachable (%s); using TCP", where, self.unix_path, exc)
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        self.handshake_timeout_s)
                self.via = "tcp"
            except (OSError, TimeoutError) as exc:
                # Across machines the replica's ephemeral port must be reachable from the shard's node.
                hint = "if a firewall blocks ports between nodes, ray.transport=ray uses Ray's channels"
                raise ConnectionError(f"{where}: cannot connect ({type(exc).__name__}: {exc}); {hint}") from None
        assert reader is not None
        _nodelay(writer)
        try:
            await asyncio.wait_for(self._handshake(reader, writer), self.handshake_timeout_s)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, TimeoutError):
                why = f"no handshake within {self.handshake_timeout_s:g} s"
                raise ConnectionError(f"{where}: {why}") from None
            if isinstance(exc, ConnectionError | asyncio.IncompleteReadError | OSError):
                raise ConnectionError(f"{where}: {exc}") from None
            raise
        self._writer, self._reader = writer, reader  # kept: a collected StreamWriter closes its transport
        self._loop = asyncio.get_running_loop()
        frames = _Frames(self._on_frame, self._on_lost, self.max_frame)
        self._transport, leftover = frames.attach(writer, reader)
        if leftover:
            frames.data_received(leftover)

    def _on_frame(self, rid: int, kind: int, payload: Any) -> None:
        entry = self._pending.get(rid)
        if entry is None:
            return
        fut, query = entry
        if fut.done():  # cancelled by its caller: forget it
            del self._pending[rid]
            return
        if kind == TOK:
            if query is not None:
                query.token()
            return
        del self._pending[rid]
        if kind == DONE:
            fut.set_result([Response(d, n, e, t, i, f) for d, n, e, t, i, f in payload])
        else:
            msg, fatal = payload
            fut.set_exception(RemoteSUTError(msg, fatal))

    def _on_lost(self, exc: BaseException | None) -> None:
        if self.closed_reason is not None:
            return
        name = type(exc).__name__ if exc is not None else "ConnectionResetError"
        detail = f": {exc}" if isinstance(exc, ConnectionError) and str(exc) else ""
        self._fail(f"connection to {self.label} lost ({name}{detail})")

    def _fail(self, reason: str) -> None:
        self.closed_reason = reason
        if self._writer is not None:
            self._writer.close()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._pending.clear()

    def request(self, qid: int, indices: list[int], samples: list[Any], query: Any | None) -> asyncio.Future[Any]:
        """Send one query; await the returned future for its responses.

        A future, not a coroutine: one coroutine fewer to create and resume per query. It fails
        with :class:`RemoteSUTError` (the SUT raised) or ``ConnectionError``; cancelling it forgets
        the query, whose late tokens and answer are then dropped as they arrive.

        Raises:
            ConnectionError: the connection is closed (or was never opened).
        """
        if self.closed_reason is not None or self._writer is None:
            raise ConnectionError(self.closed_reason or f"not connected to {self.label}")
        self._rid = rid = self._rid + 1
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending[rid] = (fut, query)
        body = pickle.dumps((qid, indices, samples, query is not None), 5)
        self._transport.write(_HDR.pack(len(body), rid, REQ) + body)  # type: ignore[union-attr]
        return fut

    async def close(self) -> None:
        if self.closed_reason is None:
            self.closed_reason = f"connection to {self.label} closed"
        if self._writer is not None:
            self._writer.close()
