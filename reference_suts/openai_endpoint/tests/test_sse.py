"""SSEDecoder: any split of the byte stream yields the same events; bad lines are errors."""

from __future__ import annotations

import pytest

from reference_suts.openai_endpoint.sse import SSEDecoder, SSEError

STREAM = (b'data: {"a": 1}\n\n: keep-alive comment\n\nevent: message\nid: 7\ndata: {"b":\ndata: 2}\n\n'
          b"retry: 100\n\ndata:[DONE]\n\n")
EVENTS = [b'{"a": 1}', b'{"b":\n2}', b"[DONE]"]


@pytest.mark.parametrize("crlf", [False, True])
def test_every_split_point_gives_the_same_events(crlf: bool) -> None:
    stream = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    for cut in range(len(stream) + 1):
        for cut2 in (cut, min(cut + 1, len(stream))):
            d = SSEDecoder()
            got = d.feed(stream[:cut]) + d.feed(stream[cut:cut2]) + d.feed(stream[cut2:])
            assert got == EVENTS, (cut, cut2)
            assert d.pending == b""


def test_truncated_and_malformed() -> None:
    d = SSEDecoder()
    assert d.feed(b'data: {"a": 1}\n\ndata: {"par') == [b'{"a": 1}']
    assert d.pending == b'data: {"par'
    with pytest.raises(SSEError, match="unexpected line 'garbage'"):
        SSEDecoder().feed(b"garbage\n\n")
