"""vLLM engine mode without vLLM: argument mapping and the streaming loop over a scripted engine.

The real ``AsyncLLM`` path runs only where vLLM is importable (``test_real_engine``, skipped here).
"""

from __future__ import annotations

import asyncio
import itertools
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

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


class StepClock:
    """now_ns() advances 1 ms per reading (enough to order token marks)."""

    def __init__(self) -> None:
        self.t = itertools.count(1_000_000, 1_000_000)

    def now_ns(self) -> int:
        return next(self.t)

    async def sleep_until(self, t_ns: int) -> None:
        return None


@dataclass
class Out:
    token_ids: list[int]
    text: str


@dataclass
class ReqOut:
    outputs: list[Out]
    finished: bool


class FakeEngine:
    """Streams DELTA outputs: ``chunks`` lists the new token ids per step (empty = no token)."""

    def __init__(self, chunks: list[list[int]], fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
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
            yield ReqOut([Out(ids, "".join(f"<{t}>" for t in ids))], finished=i == len(self.chunks) - 1)
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
    with pytest.raises(ValueError, match="chat messages need api: chat"):
        prompt_input({"messages": []}, chat=False)
    with pytest.raises(ValueError, match="neither 'prompt' nor 'messages'"):
        prompt_input({"text": "x"}, chat=False)
    with pytest.raises(ValueError, match="model: required"):
        VllmEngineSUT({})
    with pytest.raises(ValueError, match=r"^sut\.params\.urls: unknown field$"):
        VllmEngineSUT({"model": "m", "urls": []})


def test_streams_tokens_and_encodes_responses() -> None:
    eng = FakeEngine([[7], [], [8, 9], [10]])
    sut = make(eng, response_format="token_ids", max_tokens=32)

    async def main() -> tuple[Query, list[Any], list[Any]]:
        await sut.start(CTX)
        q = Query(id=0, indices=[0], samples=[{"prompt": [1, 2, 3]}], clock=StepClock())
        r1 = await sut.issue(q)
        r2 = await sut.issue(Query(id=1, indices=[4, 5], samples=["a", "b"]))
        await sut.stop()
        return q, list(r1), list(r2)

    q, [r], batch = asyncio.run(main())
    assert r.error is None and r.n_tokens == 4 and array("i", r.data).tolist() == [7, 8, 9, 10]
    assert q.token_ns == [1_000_000, 2_000_000, 3_000_000] and q.first_token_ns == 1_000_000  # one mark per delta
    assert [b.n_tokens for b in batch] == [4, 4]
    prompts = [c[0] for c in eng.calls]
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, "a", "b"]
    assert eng.calls[0][1].kw == {"output_kind": "DELTA", "max_tokens": 32, "min_tokens": 1, "temperature": 0.0}
    assert len({c[2] for c in eng.calls}) == 3 and eng.calls[0][2].startswith("s3-")
    assert eng.shut and sut.engine is None


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
            return await sut.issue(Query(id=0, indices=[0], samples=[{"prompt": [1, 2, 3]}], clock=StepClock()))
        finally:
            await sut.stop()

    [r] = asyncio.run(main())
    assert r.error is None and r.n_tokens == 8 and len(array("i", r.data)) == 8
