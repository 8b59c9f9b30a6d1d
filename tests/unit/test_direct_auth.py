"""The direct channel's handshake: nothing from an unauthenticated peer is ever unpickled.

Each test starts a real :func:`raybench.ray.direct.serve_direct` on 127.0.0.1 inside
``asyncio.run`` (no Ray). The hostile payload is a pickle whose loading calls ``os.mkdir`` on a
marker path, the same shape as the frame that used to run code inside a replica; a control test
proves that payload really does create the marker when unpickled.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from raybench.core.protocols import Response
from raybench.ray.direct import DirectClient, DirectServer, serve_direct

SECRET = bytes(range(32))
WRONG = bytes(range(1, 33))
WIRE_HDR = struct.Struct("!IQB")  # the channel's frame header: payload length, request id, kind (0 = request)


class _Mkdir:
    """Unpickling this object calls ``os.mkdir(path)``: proof that a frame was deserialised."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def evil_frame(marker: Path) -> bytes:
    """A well-formed request frame (as the pre-auth server accepted) whose payload runs os.mkdir."""
    body = pickle.dumps((7, [0], [_Mkdir(marker)], False), protocol=5)
    return WIRE_HDR.pack(len(body), 1, 0) + body


class Recorder:
    """The replica's ``issue`` callback: answers one Response per index and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[int]]] = []

    async def __call__(self, qid: int, indices: list[int], samples: list[Any], on_token: Any) -> list[Any]:
        self.calls.append((qid, list(indices)))
        if on_token is not None:
            on_token()
            on_token()
        return [Response(f"{qid}:{s}".encode(), 2 if on_token else 0) for s in samples]


def run_with_server(
    body: Callable[[DirectServer, Recorder], Awaitable[None]], **kw: Any
) -> tuple[DirectServer, Recorder]:
    rec = Recorder()

    async def main() -> DirectServer:
        srv = await serve_direct("127.0.0.1", rec, SECRET, **kw)
        try:
            await body(srv, rec)
        finally:
            srv.close()
        return srv

    return asyncio.run(main()), rec


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    """Everything the server sends before it closes; fails (TimeoutError) if it keeps it open."""
    got = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(4096)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


class _Token:
    def __init__(self) -> None:
        self.n = 0

    def token(self) -> None:
        self.n += 1


def test_the_hostile_payload_is_live(tmp_path: Path) -> None:
    # Control: unpickling the frame's payload does create the marker, so "marker absent" below
    # means "never unpickled", not "the payload is harmless".
    frame = evil_frame(tmp_path / "control")
    pickle.loads(frame[WIRE_HDR.size:])
    assert (tmp_path / "control").is_dir()


def test_right_secret_gets_responses_and_tokens() -> None:
    results: dict[str, Any] = {}

    async def body(srv: DirectServer, rec: Recorder) -> None:
        c = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET)
        await c.connect()
        tok = _Token()
        plain, streamed = await asyncio.gather(c.request(5, [1, 2], ["a", "b"], None),
                                               c.request(6, [3], ["c"], tok))
        results.update(plain=plain, streamed=streamed, tokens=tok.n)
        await c.close()

    srv, rec = run_with_server(body)
    assert results["plain"] == [Response(b"5:a", 0), Response(b"5:b", 0)]
    assert results["streamed"] == [Response(b"6:c", 2)]
    assert results["tokens"] == 2
    assert sorted(rec.calls) == [(5, [1, 2]), (6, [3])]
    assert (srv.accepted_connections, srv.rejected_connections, srv.rejected_peers) == (1, 0, [])


def test_pickle_frame_without_handshake_is_dropped_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    seen: dict[str, Any] = {}

    async def body(srv: DirectServer, rec: Recorder) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        local = writer.get_extra_info("sockname")
        writer.write(evil_frame(marker))
        await writer.drain()
        seen["got"] = await read_until_closed(reader)
        seen["peer"] = f"{local[0]}:{local[1]}"
        writer.close()

    srv, rec = run_with_server(body)
    # The server greeted (magic + 32-byte nonce), read 64 bytes of "answer", found no valid proof
    # and closed; never its own proof. (The close may be a reset, since the rest of the frame is
    # left unread, and a reset can discard the greeting on our side: hence 0 or 36 bytes.)
    assert len(seen["got"]) in (0, 36) and seen["got"][:4] in (b"", b"RBD1")
    assert not marker.exists()
    assert rec.calls == []
    assert srv.rejected_connections == 1 and srv.accepted_connections == 0
    assert srv.rejected_peers == [seen["peer"]]


def test_wrong_secret_is_rejected_and_the_client_is_told(tmp_path: Path) -> None:
    errors: list[str] = []

    async def body(srv: DirectServer, rec: Recorder) -> None:
        c = DirectClient("127.0.0.1", srv.port, "replica 0", WRONG)
        with pytest.raises(ConnectionError) as info:
            await c.connect()
        errors.append(str(info.value))
        # The right secret still works afterwards: one bad peer does not take the replica down.
        good = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET)
        await good.connect()
        assert await good.request(1, [0], ["x"], None) == [Response(b"1:x", 0)]
        await good.close()

    srv, rec = run_with_server(body)
    assert "run secret rejected" in errors[0]
    assert rec.calls == [(1, [0])]
    assert (srv.rejected_connections, srv.accepted_connections) == (1, 1)


def test_wrong_secret_then_pickle_frame_is_never_unpickled(tmp_path: Path) -> None:
    # A peer that answers the greeting with a wrong proof and sends a frame right behind it.
    marker = tmp_path / "pwned"

    async def body(srv: DirectServer, rec: Recorder) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        hello = await reader.readexactly(36)
        assert hello[:4] == b"RBD1"
        writer.write(os.urandom(32) + b"\0" * 32 + evil_frame(marker))
        await writer.drain()
        assert await read_until_closed(reader) == b""  # no server proof, just the close
        writer.close()

    srv, rec = run_with_server(body)
    assert not marker.exists()
    assert rec.calls == []
    assert srv.rejected_connections == 1


def test_silent_peer_is_dropped_after_the_handshake_timeout() -> None:
    timing: dict[str, float] = {}

    async def body(srv: DirectServer, rec: Recorder) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        t = time.monotonic()
        got = await read_until_closed(reader, timeout=1.0)
        timing["held_s"] = time.monotonic() - t
        assert len(got) == 36  # the greeting, then nothing until the server gave up
        writer.close()

    srv, rec = run_with_server(body, handshake_timeout_s=0.2)
    assert 0.15 <= timing["held_s"] < 0.8
    assert srv.rejected_connections == 1 and rec.calls == []


def test_absurd_frame_length_after_auth_drops_the_connection() -> None:
    state: dict[str, Any] = {}

    async def body(srv: DirectServer, rec: Recorder) -> None:
        c = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET)
        await c.connect()
        assert c._writer is not None
        c._writer.write(WIRE_HDR.pack(2**31, 1, 0))  # 2 GiB: above the 1 GiB limit
        async with asyncio.timeout(2.0):
            while c.closed_reason is None:
                await asyncio.sleep(0.01)
        state["reason"] = c.closed_reason
        with pytest.raises(ConnectionError):
            await c.request(1, [0], ["x"], None)
        await c.close()

    srv, rec = run_with_server(body)
    assert "lost" in state["reason"]
    assert rec.calls == [] and srv.accepted_connections == 1 and srv.rejected_connections == 0


def test_client_refuses_an_impostor_before_unpickling_anything(tmp_path: Path) -> None:
    # Something else took the replica's port: it greets like a replica but cannot prove the
    # secret, then pushes a pickle frame. The shard must fail the connect and load nothing.
    marker = tmp_path / "pwned"
    errors: list[str] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RBD1" + os.urandom(32))
        await reader.readexactly(64)
        writer.write(os.urandom(32) + evil_frame(marker))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(impostor, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        c = DirectClient("127.0.0.1", port, "replica 0", SECRET)
        with pytest.raises(ConnectionError) as info:
            await c.connect()
        errors.append(str(info.value))
        await asyncio.sleep(0.1)
        server.close()

    asyncio.run(main())
    assert "did not prove the run secret" in errors[0]
    assert not marker.exists()


def test_client_times_out_on_a_silent_port() -> None:
    # A listener that never greets (another service on the port) cannot hang a shard's start.
    with socket.create_server(("127.0.0.1", 0)) as ls:
        port = ls.getsockname()[1]

        async def main() -> None:
            c = DirectClient("127.0.0.1", port, "replica 0", SECRET, handshake_timeout_s=0.2)
            t = time.monotonic()
            with pytest.raises(ConnectionError, match="no handshake within 0.2 s"):
                await c.connect()
            assert time.monotonic() - t < 1.0

        asyncio.run(main())


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        DirectClient("127.0.0.1", 1, "replica 0", b"short")
    with pytest.raises(ValueError):
        DirectServer(Recorder(), b"")
