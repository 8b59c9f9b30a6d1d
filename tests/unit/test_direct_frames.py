"""The direct channel's framing after the handshake (real sockets on 127.0.0.1, no Ray)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import pickle
import struct
from typing import Any

from raybench.core.protocols import Response
from raybench.ray.direct import serve_direct

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
    assert payload == [(b"7:x", 3, None, 11)]
