"""The direct channel's framing after the handshake, and its unix socket (real sockets, no Ray)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import pickle
import struct
from typing import Any

import pytest

from raybench.core.protocols import Response
from raybench.ray.direct import DirectClient, serve_direct

SECRET = bytes(range(32))
HDR = struct.Struct("!IQB")  # payload length, request id, kind (0 request, 2 done)


async def _answer(qid: int, indices: list[int], samples: list[Any], on_token: Any) -> list[Response]:
    return [Response(f"{qid}:{s}".encode(), 3, None, 11) for s in samples]


def _mac(ctx: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(SECRET, ctx + first + second, hashlib.sha256).digest()


def test_a_request_in_the_same_segment_as_the_handshake_is_answered() -> None:
    # A client may send its first request right behind its handshake proof; the replica then
    # finds that frame already buffered when it switches to framing, and must still answer it.
    async def main() -> tuple[int, int, Any]:
        srv = await serve_direct("127.0.0.1", _answer, SECRET)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            hello = await asyncio.wait_for(reader.readexactly(36), 2.0)
            assert hello[:4] == b"RBD1"
            ns, nc = hello[4:], os.urandom(32)
            body = pickle.dumps((7, [4], ["x"], False), protocol=5)
            writer.write(nc + _mac(b"raybench-direct-v1 shard->replica", ns, nc) + HDR.pack(len(body), 9, 0) + body)
            proof = await asyncio.wait_for(reader.readexactly(32), 2.0)
            assert proof == _mac(b"raybench-direct-v1 replica->shard", nc, ns)
            n, rid, kind = HDR.unpack(await asyncio.wait_for(reader.readexactly(HDR.size), 2.0))
            payload = pickle.loads(await asyncio.wait_for(reader.readexactly(n), 2.0))
            writer.close()
            return rid, kind, payload
        finally:
            srv.close()

    rid, kind, payload = asyncio.run(main())
    assert (rid, kind) == (9, 2)
    assert payload == [(b"7:x", 3, None, 11, 0, None)]  # data, n_tokens, error, sut_ns, n_input_tokens, finish_reason


def test_unix_socket_serves_the_same_protocol_and_is_removed_on_close() -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        srv = await serve_direct("127.0.0.1", _answer, SECRET, unix=True)
        path = srv.unix_path
        assert path is not None
        seen["mode"] = os.stat(os.path.dirname(path)).st_mode & 0o777
        c = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET, unix_path=path)
        await c.connect()
        seen["via"] = c.via
        seen["resps"] = await asyncio.wait_for(c.request(5, [1, 2], ["a", "b"], None), 2.0)
        await c.close()
        seen["accepted"] = srv.accepted_connections
        srv.close()
        seen["left"] = os.path.exists(os.path.dirname(path))

    asyncio.run(main())
    assert seen == {"mode": 0o700, "via": "unix", "resps": [Response(b"5:a", 3, None, 11), Response(b"5:b", 3, None, 11)],
                    "accepted": 1, "left": False}


def test_unreachable_unix_socket_falls_back_to_tcp(tmp_path: Any) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        srv = await serve_direct("127.0.0.1", _answer, SECRET)
        try:
            assert srv.unix_path is None
            c = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET, unix_path=str(tmp_path / "gone.sock"))
            await c.connect()
            seen["via"] = c.via
            seen["resps"] = await asyncio.wait_for(c.request(6, [0], ["z"], None), 2.0)
            await c.close()
        finally:
            srv.close()

    asyncio.run(main())
    assert seen == {"via": "tcp", "resps": [Response(b"6:z", 3, None, 11)]}


def test_unix_socket_still_requires_the_secret() -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        srv = await serve_direct("127.0.0.1", _answer, SECRET, unix=True)
        try:
            c = DirectClient("127.0.0.1", srv.port, "replica 0", bytes(range(1, 33)), unix_path=srv.unix_path)
            with pytest.raises(ConnectionError, match="secret rejected"):
                await c.connect()
            await asyncio.sleep(0.05)
            seen["counts"] = (srv.accepted_connections, srv.rejected_connections, srv.rejected_peers)
        finally:
            srv.close()

    asyncio.run(main())
    assert seen["counts"] == (0, 1, ["a local (unix) socket"])


def test_a_cancelled_request_drops_its_late_tokens_and_answer() -> None:
    class Tokens:
        n = 0

        def token(self) -> None:
            self.n += 1

    async def slow(qid: int, indices: list[int], samples: list[Any], on_token: Any) -> list[Response]:
        await asyncio.sleep(0.1)
        if on_token is not None:
            on_token()
        return [Response(b"late", 1, None, 0)]

    seen: dict[str, Any] = {}

    async def main() -> None:
        srv = await serve_direct("127.0.0.1", slow, SECRET)
        try:
            c = DirectClient("127.0.0.1", srv.port, "replica 0", SECRET)
            await c.connect()
            toks = Tokens()
            fut = c.request(1, [0], ["a"], toks)
            await asyncio.sleep(0.02)
            fut.cancel()
            await asyncio.sleep(0.3)  # the token and the answer arrive now
            seen["tokens"], seen["pending"] = toks.n, len(c._pending)
            seen["next"] = await asyncio.wait_for(c.request(2, [1], ["b"], None), 2.0)
            await c.close()
        finally:
            srv.close()

    asyncio.run(main())
    assert seen == {"tokens": 0, "pending": 0, "next": [Response(b"late", 1, None, 0)]}
