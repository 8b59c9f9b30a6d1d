"""vLLM engine mode without vLLM: argument mapping and the streaming loop over a scripted engine.

The real ``AsyncLLM`` path runs only where vLLM is importable (``test_real_engine``, skipped here).
"""

from __future__ import annotations

import asyncio
import base64
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from raybench.core.clock import VirtualClock
from raybench.core.protocols import Query, SUTContext
from reference_suts.vllm import create_sut
from reference_suts.vllm.engine import (
    EngineDiedError,
    VllmEngineSUT,
    engine_kwargs,
    prompt_input,
    sampling_kwargs,
)

CTX = SUTContext(workload="llm", scenario="Server", mode="PerformanceOnly", shard=3)


@dataclass
class Out:
    token_ids: list[int]
    text: str
    finish_reason: str | None = None


@dataclass
class ReqOut:
    outputs: list[Out]
    finished: bool
    prompt_token_ids: list[int] | None = None


class FakeEngine:
    """Streams DELTA outputs: ``chunks`` lists the new token ids per step (empty = no token).

    With a ``clock`` (a :class:`VirtualClock` driving the loop) every step takes ``step_ns``.
    """

    def __init__(self, chunks: list[list[int]], fail: Exception | None = None, clock: VirtualClock | None = None,
                 step_ns: int = 0, finish: str | None = None, prompt_ids: list[int] | None = None) -> None:
        self.chunks = chunks
        self.finish = finish  # the last output's finish_reason
        self.prompt_ids = prompt_ids  # sent with every output, as vLLM's RequestOutput.prompt_token_ids
        self.fail = fail
        self.clock = clock
        self.step_ns = step_ns
        self.errored = False
        self.calls: list[tuple[Any, Any, str]] = []
        self.tokenizer = self
        self.shut = False

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool, tokenize: bool) -> str:
        assert add_generation_prompt and not tokenize
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    async def generate(self, prompt: Any, sp: Any, rid: str) -> AsyncIterator[ReqOut]:
        self.calls.append((prompt, sp, rid))
        for i, ids in enumerate(self.chunks):
            if self.fail is not None and i == 1:
                raise self.fail
            if self.clock is not None:
                await self.clock.sleep_until(self.clock.now_ns() + self.step_ns)
            last = i == len(self.chunks) - 1
            yield ReqOut([Out(ids, "".join(f"<{t}>" for t in ids), self.finish if last else None)], finished=last,
                         prompt_token_ids=self.prompt_ids)
            await asyncio.sleep(0)

    def shutdown(self) -> None:
        self.shut = True


class FakeSP:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw


def make(engine: FakeEngine, **params: Any) -> VllmEngineSUT:
    sut = create_sut({"mode": "engine", "model": "/m", **params})
    assert isinstance(sut, VllmEngineSUT)
    sut._make_engine = lambda: (engine, FakeSP, "DELTA")  # type: ignore[method-assign]
    return sut


def test_argument_mapping() -> None:
    p = {"model": "m", "tensor_parallel_size": 4, "max_model_len": 2048, "dtype": "bfloat16", "enforce_eager": True,
         "enable_prefix_caching": False, "max_num_seqs": None, "gpu_memory_utilization": 0.9,
         "engine_args": {"kv_cache_dtype": "fp8"}}  # fmt: skip
    assert engine_kwargs(p) == {
        "model": "m", "tensor_parallel_size": 4, "max_model_len": 2048, "gpu_memory_utilization": 0.9,
        "dtype": "bfloat16", "enforce_eager": True, "enable_prefix_caching": False, "kv_cache_dtype": "fp8",
    }  # fmt: skip
    sp = {"max_tokens": 128, "min_tokens": 1, "temperature": 0.0, "ignore_eos": True, "sampling": {"seed": 7}}
    assert sampling_kwargs(sp, {"prompt": "x", "max_tokens": 16, "params": {"top_p": 0.5}}) == {
        "max_tokens": 16, "min_tokens": 1, "temperature": 0.0, "ignore_eos": True, "seed": 7, "top_p": 0.5,
    }  # fmt: skip
    assert sampling_kwargs({**sp, "ignore_eos": False, "sampling": {}}, "x") == {"max_tokens": 128, "min_tokens": 1, "temperature": 0.0}
    assert prompt_input({"prompt": [1, 2]}, chat=False) == {"prompt_token_ids": [1, 2]}
    assert prompt_input(b"\x05\x06", chat=False) == {"prompt_token_ids": [5, 6]}
    assert prompt_input("hi", chat=False) == "hi"
    eng = FakeEngine([])
    assert prompt_input({"messages": [{"role": "user", "content": "hi"}]}, chat=True, tokenizer=eng) == "<user>hi<assistant>"
    # chat messages are rendered whatever api says (only chat messages can carry them)
    assert prompt_input({"messages": [{"role": "user", "content": "hi"}]}, chat=False, tokenizer=eng) == "<user>hi<assistant>"
    with pytest.raises(ValueError, match="chat messages need the model's tokenizer"):
        prompt_input({"messages": []}, chat=False)
    with pytest.raises(ValueError, match="neither 'prompt' nor 'messages'"):
        prompt_input({"text": "x"}, chat=False)
    with pytest.raises(ValueError, match="model: required"):
        VllmEngineSUT({})
    with pytest.raises(ValueError, match=r"^sut\.params\.urls: unknown field$"):
        VllmEngineSUT({"model": "m", "urls": []})


def test_streams_tokens_and_encodes_responses() -> None:
    clock = VirtualClock()
    eng = FakeEngine([[7], [], [8, 9], [10]], clock=clock, step_ns=1_000_000)  # one engine step per ms
    sut = make(eng, response_format="token_ids", max_tokens=32)
    # start() builds the engine in a worker thread, which a virtual-time loop cannot wait for (it
    # would find itself idle with no timer): start on a real loop, stream on virtual time.
    asyncio.run(sut.start(CTX))

    async def main() -> tuple[int, Query, list[Any], list[Any]]:
        t0 = clock.now_ns()
        q = Query(id=0, indices=[0], samples=[{"prompt": [1, 2, 3]}], clock=clock)
        r1 = await sut.issue(q)
        r2 = await sut.issue(Query(id=1, indices=[4, 5], samples=["a", "b"]))
        await sut.stop()
        return t0, q, list(r1), list(r2)

    t0, q, [r], batch = clock.run(main())
    assert r.error is None and r.n_tokens == 4 and array("i", r.data).tolist() == [7, 8, 9, 10]
    # one mark per non-empty delta, at its step's time: steps 1, 3 and 4 (step 2 brought no token)
    assert q.token_ns == [t0 + 1_000_000, t0 + 3_000_000, t0 + 4_000_000] and q.first_token_ns == t0 + 1_000_000
    assert clock.now_ns() == t0 + 8_000_000  # then the two-sample query: 4 steps, its samples concurrently
    assert [b.n_tokens for b in batch] == [4, 4]
    prompts = [c[0] for c in eng.calls]
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, "a", "b"]
    assert eng.calls[0][1].kw == {"output_kind": "DELTA", "max_tokens": 32, "min_tokens": 1, "temperature": 0.0}
    assert len({c[2] for c in eng.calls}) == 3 and eng.calls[0][2].startswith("s3-")
    assert eng.shut and sut.engine is None


def test_finish_reason_prompt_tokens_and_first_token_data() -> None:
    """Each response carries vLLM's finish_reason and the prompt's token count (the engine's
    ``prompt_token_ids``, else the token-id prompt's length); an accuracy-logged query also gets
    its first delta's tokens, encoded as the answer."""
    clock = VirtualClock()
    texts = make(FakeEngine([[], [7, 8], [9]], clock=clock, step_ns=1_000_000, finish="stop", prompt_ids=[5] * 11))
    ids = make(FakeEngine([[4], [6]], finish="length"), response_format="token_ids")
    asyncio.run(texts.start(CTX))
    asyncio.run(ids.start(CTX))

    async def main() -> list[tuple[Any, Query]]:
        out = []
        for sut, sample, want in ((texts, "hello", True), (texts, "hello", False), (ids, {"prompt": [1, 2, 3]}, True)):
            q = Query(id=0, indices=[0], samples=[sample], clock=clock, want_token_data=want)
            [r] = await sut.issue(q)
            out.append((r, q))
        [r_batch, _] = await ids.issue(Query(id=1, indices=[1, 2], samples=[[1, 2], [3]]))
        out.append((r_batch, None))
        return out

    (r_text, q_text), (r_plain, q_plain), (r_ids, q_ids), (r_batch, _) = clock.run(main())
    assert (r_text.data, r_text.n_tokens, r_text.n_input_tokens, r_text.finish_reason) == (b"<7><8><9>", 3, 11, "stop")
    assert q_text.first_token_data == b"<7><8>" and q_text.first_token_ns == q_text.token_ns[0]
    assert q_plain.first_token_data is None and (r_plain.n_input_tokens, r_plain.finish_reason) == (11, "stop")
    assert array("i", r_ids.data).tolist() == [4, 6] and (r_ids.n_input_tokens, r_ids.finish_reason) == (3, "length")
    assert array("i", q_ids.first_token_data).tolist() == [4]
    assert (r_batch.n_input_tokens, r_batch.finish_reason) == (2, "length")


def test_chat_text_and_engine_failures() -> None:
    eng = FakeEngine([[1], [2]])
    sut = make(eng, api="chat")

    async def main() -> Any:
        await sut.start(CTX)
        [r] = await sut.issue(Query(id=0, indices=[0], samples=[{"messages": [{"role": "user", "content": "q"}]}]))
        [bad] = await sut.issue(Query(id=1, indices=[1], samples=[{"nothing": 1}]))
        eng.fail = RuntimeError("request rejected")
        [rej] = await sut.issue(Query(id=2, indices=[2], samples=["x"]))
        eng.errored = True
        with pytest.raises(EngineDiedError, match="vLLM engine died: RuntimeError: request rejected"):
            await sut.issue(Query(id=3, indices=[3], samples=["x"]))
        return r, bad, rej

    r, bad, rej = asyncio.run(main())
    assert r.data == b"<1><2>" and r.n_tokens == 2 and eng.calls[0][0] == "<user>q<assistant>"
    assert bad.error == "bad sample: payload has neither 'prompt' nor 'messages'"
    assert rej.error == "vllm: RuntimeError: request rejected"
    assert EngineDiedError.fatal


@pytest.mark.slow
def test_real_engine() -> None:
    pytest.importorskip("vllm", reason="vLLM not installed beside raybench (engine mode runs where it is)")
    from reference_suts.vllm.tiny import ensure_tiny_qwen3

    sut = create_sut({"mode": "engine", "model": str(ensure_tiny_qwen3()), "max_model_len": 256, "dtype": "float32",
                      "enforce_eager": True, "max_tokens": 8, "ignore_eos": True, "response_format": "token_ids"})  # fmt: skip

    async def main() -> Any:
        await sut.start(CTX)
        try:
            # a real engine needs a real loop: the virtual clock only stamps the tokens here
            return await sut.issue(Query(id=0, indices=[0], samples=[{"prompt": [1, 2, 3]}], clock=VirtualClock()))
        finally:
            await sut.stop()

    [r] = asyncio.run(main())
    assert r.error is None and r.n_tokens == 8 and len(array("i", r.data)) == 8


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 30)).save(buf, format="PNG")
    return buf.getvalue()


class TemplateRecorder:
    """A tokenizer whose chat template records the messages it was given."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def apply_chat_template(self, messages: list[Any], add_generation_prompt: bool, tokenize: bool) -> str:
        self.seen.append(messages)
        return "rendered"


def test_image_url_parts_become_multi_modal_data() -> None:
    """qwen3_vl's payload shape: system text, then user [text, image_url data URL]."""
    png = _png(3, 2)
    url = "data:image/PNG;base64," + base64.b64encode(png).decode()
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": url}}]},
    ]
    tok = TemplateRecorder()
    got = prompt_input({"messages": messages}, chat=False, tokenizer=tok)
    assert tok.seen == [[
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image"}]},
    ]]  # fmt: skip
    assert got["prompt"] == "rendered" and list(got) == ["prompt", "multi_modal_data"]
    [img] = got["multi_modal_data"]["image"]
    assert img.format == "PNG" and img.size == (3, 2) and img.getpixel((0, 0)) == (200, 10, 30)
    assert messages[1]["content"][1]["type"] == "image_url"  # the payload itself is untouched
    for bad, why in (
        ("https://example.com/a.png", "engine mode takes base64 data URLs only"),
        ("data:image/PNG;base64,@@@", "bad base64 data"),
        ("data:image/PNG;base64," + base64.b64encode(b"not an image").decode(), "not a decodable image"),
    ):
        part = {"type": "image_url", "image_url": {"url": bad}}
        with pytest.raises(ValueError, match=f"^image_url: {why}"):
            prompt_input({"messages": [{"role": "user", "content": [part]}]}, chat=True, tokenizer=tok)


def test_none_sampling_takes_the_model_generation_config() -> None:
    """temperature/max_tokens None (the qwen3_vl defaults): the model's generation_config, no limit sent."""
    gen = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0}
    p = {"max_tokens": None, "min_tokens": 1, "temperature": None, "ignore_eos": False, "sampling": {}}
    # max_tokens None is passed as None: vLLM then allows max_model_len - prompt length
    assert sampling_kwargs(p, {"messages": []}, gen) == {**gen, "max_tokens": None, "min_tokens": 1}
    assert sampling_kwargs({**p, "sampling": {"top_k": 5}}, {"messages": [], "max_tokens": 150}, gen) == {
        **gen, "top_k": 5, "min_tokens": 1, "max_tokens": 150,
    }  # fmt: skip
    # a generation_config max_new_tokens (vLLM names it max_tokens here) is the limit then
    assert sampling_kwargs(p, "x", {**gen, "max_tokens": 99})["max_tokens"] == 99
    # an explicit temperature ignores the generation_config (greedy stays greedy)
    assert sampling_kwargs({**p, "temperature": 0.0}, "x", gen) == {"temperature": 0.0, "max_tokens": None, "min_tokens": 1}

    class Config:
        def get_diff_sampling_param(self) -> dict[str, Any]:
            return dict(gen)

    eng = FakeEngine([[1]])
    eng.model_config = Config()  # type: ignore[attr-defined]
    sut = make(eng, temperature=None, max_tokens=None)

    async def main() -> Any:
        await sut.start(CTX)
        return await sut.issue(Query(id=0, indices=[0], samples=[{"messages": [{"role": "user", "content": "q"}]}]))

    [r] = asyncio.run(main())
    assert r.error is None and r.data == b"<1>"
    assert eng.calls[0][0] == "<user>q<assistant>"  # api completions: messages still rendered
    assert eng.calls[0][1].kw == {"output_kind": "DELTA", **gen, "max_tokens": None, "min_tokens": 1}
