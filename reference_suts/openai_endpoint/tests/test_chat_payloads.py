"""Chat and multimodal payloads: which API they go to and the exact request body.

A ``{"messages": [...]}`` payload goes to ``/v1/chat/completions`` whatever ``api`` says (only the
chat API takes messages, and with them ``image_url`` parts); ``None`` request fields are not sent.
"""

from __future__ import annotations

import base64
from typing import Any

from raybench.core.clock import VirtualClock
from raybench.core.protocols import Query, SUTContext
from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT

from .scripted_server import Script, ScriptedServer

CTX = SUTContext(workload="qwen3_vl", scenario="Offline", mode="AccuracyOnly")
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
MESSAGES = [
    {"role": "system", "content": "Answer in JSON."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "The title of the product is the following: ..."},
            {"type": "image_url", "image_url": {"url": "data:image/PNG;base64," + base64.b64encode(IMAGE).decode()}},
        ],
    },
]


def test_messages_go_to_chat_completions_with_exact_bodies() -> None:
    clock = VirtualClock()

    async def main() -> tuple[list[Any], list[dict[str, Any]], list[str]]:
        async with ScriptedServer({"json": Script(chunks=['{"category": ', '"A > B"}'])}, default="json") as srv:
            paths: list[str] = []
            orig = srv._play

            async def spy(request: Any) -> Any:
                paths.append(request.path)
                return await orig(request)

            srv._play = spy  # type: ignore[method-assign]
            # api: completions (the default) and the client's default sampling fields
            plain = OpenAIEndpointSUT({"urls": [srv.url], "model": "m", "connections": 1})
            # the qwen3_vl defaults: no sampling field, no max_tokens; not streamed
            ref = OpenAIEndpointSUT(
                {"urls": [srv.url], "model": "m", "connections": 1, "api": "chat", "temperature": None,
                 "max_tokens": None, "stream": False}
            )  # fmt: skip
            out = []
            for sut, sample in (
                (plain, {"messages": MESSAGES}),
                (ref, {"messages": MESSAGES}),
                (ref, {"messages": MESSAGES, "max_tokens": None, "params": {"top_k": 20}}),
                (ref, {"messages": []}),
                (ref, {"messages": "hi"}),
            ):
                await sut.start(CTX)
                [r] = await sut.issue(Query(id=len(out), indices=[0], samples=[sample], clock=clock))
                out.append(r)
                await sut.stop()
            return out, srv.requests, paths

    out, reqs, paths = clock.run(main())
    assert [r.data for r in out[:3]] == [b'{"category": "A > B"}'] * 3 and all(r.error is None for r in out[:3])
    assert paths == ["/v1/chat/completions"] * 3  # the two bad samples never left the client
    assert reqs[0] == {
        "model": "m", "max_tokens": 128, "temperature": 0.0, "stream": True,
        "stream_options": {"include_usage": True}, "messages": MESSAGES,
    }  # fmt: skip
    assert reqs[1] == {"model": "m", "messages": MESSAGES}  # what the MLPerf Qwen3-VL reference sends
    assert reqs[2] == {"model": "m", "messages": MESSAGES, "top_k": 20}
    url = reqs[1]["messages"][1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.removeprefix("data:image/PNG;base64,")) == IMAGE
    assert out[3].error == out[4].error == "bad sample: 'messages' must be a non-empty list of chat messages"
