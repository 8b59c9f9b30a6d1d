"""A direct shard-to-replica channel: length-prefixed pickle frames over one TCP connection.

A Ray actor call costs a few hundred microseconds to milliseconds of scheduling and object-store
work per query, which is most of the budget when a SUT answers in a millisecond. With
``ray.transport=direct`` each SUT replica also listens on a TCP port (on its node's IP, or
127.0.0.1 when every actor runs on one node) and each shard keeps one connection per replica.
Ray still places, starts, monitors and kills the actors; only the per-query messages bypass it.

Frames: ``!IQB`` header (payload length, request id, kind) + pickle payload.
Kinds: request (``qid, indices, samples``), token event, done (list of Response), error (str).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Callable
from typing import Any

from raybench.core.protocols import Response

__all__ = ["DirectClient", "RemoteSUTError", "serve_direct"]

_HDR = struct.Struct("!IQB")
REQ, TOK, DONE, ERR = 0, 1, 2, 3


class RemoteSUTError(RuntimeError):
    """The SUT raised in the replica; ``fatal`` when it says the replica cannot serve any more."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def _frame(rid: int, kind: int, obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=5)
    return _HDR.pack(len(body), rid, kind) + body


async def serve_direct(
    host: str,
    issue: Callable[[int, list[int], list[Any], Callable[[], None] | None], Any],
) -> tuple[asyncio.base_events.Server, int]:
    """Start the replica side: every request frame runs ``issue(...)`` as its own task.

    ``issue(qid, indices, samples, on_token)`` is awaited and returns the responses;
    ``on_token`` (when not None) forwards a token event to the caller.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()

        async def one(rid: int, payload: tuple[int, list[int], list[Any], bool]) -> None:
            qid, indices, samples, stream = payload

            def on_token() -> None:
                writer.write(_HDR.pack(0, rid, TOK))

            try:
                resps = await issue(qid, indices, samples, on_token if stream else None)
                # Plain tuples pickle several times faster than dataclass instances.
                writer.write(_frame(rid, DONE, [(r.data, r.n_tokens, r.error) for r in resps]))
            except Exception as exc:  # reported to the shard as this query's error
                writer.write(_frame(rid, ERR, (f"{type(exc).__name__}: {exc}", bool(getattr(exc, "fatal", False)))))

        try:
            while True:
                hdr = await reader.readexactly(_HDR.size)
                n, rid, kind = _HDR.unpack(hdr)
                payload = pickle.loads(await reader.readexactly(n)) if n else None
                if kind == REQ:
                    t = asyncio.ensure_future(one(rid, payload))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


class DirectClient:
    """The shard side of one replica connection (many requests in flight, matched by id)."""

    def __init__(self, host: str, port: int, label: str) -> None:
        self.host, self.port, self.label = host, port, label
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        self._rid = 0
        self._reader_task: asyncio.Task[None] | None = None
        self.closed_reason: str | None = None

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader_task = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                n, rid, kind = _HDR.unpack(await reader.readexactly(_HDR.size))
                payload = pickle.loads(await reader.readexactly(n)) if n else None
                entry = self._pending.get(rid)
                if entry is None:
                    continue
                fut, query = entry
                if kind == TOK:
                    if query is not None:
                        query.token()
                    continue
                self._pending.pop(rid, None)
                if fut.done():
                    continue
                if kind == DONE:
                    fut.set_result([Response(d, n, e) for d, n, e in payload])
                else:
                    msg, fatal = payload
                    fut.set_exception(RemoteSUTError(msg, fatal))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._fail(f"connection to {self.label} lost ({type(exc).__name__})")

    def _fail(self, reason: str) -> None:
        self.closed_reason = reason
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._pending.clear()

    async def request(self, qid: int, indices: list[int], samples: list[Any], query: Any | None) -> Any:
        if self.closed_reason is not None or self._writer is None:
            raise ConnectionError(self.closed_reason or f"not connected to {self.label}")
        self._rid += 1
        rid = self._rid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, query)
        self._writer.write(_frame(rid, REQ, (qid, indices, samples, query is not None)))
        try:
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
