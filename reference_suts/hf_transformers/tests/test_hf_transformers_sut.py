"""The Transformers SUT on tiny random Qwen3 / Qwen3-VL models built locally (no hub, no Ray).

Generation runs in a worker thread, which a virtual-time loop cannot wait for (it would find itself
idle with no timer), so these tests run on a real loop and give the queries a :class:`VirtualClock`
that nothing advances: every token mark reads its start time, and the tests count the marks.
"""

from __future__ import annotations

import asyncio
import base64
import io

import pytest

from raybench.core.clock import VirtualClock
from raybench.core.protocols import Query, Response, SUTContext
from reference_suts.hf_transformers import SUT_SPEC
from reference_suts.hf_transformers.sut import HFTransformersSUT, to_conversation

CLOCK = VirtualClock()
T0 = CLOCK.now_ns()  # never advanced: the time of every token mark


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("rbcache")
        mp.setenv("RAYBENCH_CACHE", str(d))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield d


def _png(w, h):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_config_validation():
    with pytest.raises(ValueError, match=r"^sut\.params\.model: required \(a local checkpoint directory"):
        HFTransformersSUT(dict(SUT_SPEC.params))
    with pytest.raises(ValueError, match=r"^sut\.params\.beams: unknown field$"):
        HFTransformersSUT({"model": "tiny-qwen3", "beams": 4})
    with pytest.raises(ValueError, match=r"^sut\.params\.model_type: Input should be 'auto', 'causal_lm' or "):
        HFTransformersSUT({"model": "x", "model_type": "seq2seq"})
    sut = HFTransformersSUT({"model": "/nonexistent/ckpt"})
    with pytest.raises(FileNotFoundError, match="set allow_download=true"):
        sut._resolve_model()
    assert HFTransformersSUT({**SUT_SPEC.params, "model": "tiny-qwen3", "max_batch": 3}).max_batch == 3


def test_to_conversation_decodes_data_url_images():
    url = "data:image/PNG;base64," + base64.b64encode(_png(37, 21)).decode()
    conv, images = to_conversation(
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                },
            ]
        }
    )
    assert conv == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]},
    ]
    assert [im.size for im in images] == [(37, 21)] and images[0].format == "PNG"
    assert to_conversation("hello") == ([{"role": "user", "content": "hello"}], [])
    with pytest.raises(ValueError, match="remote image URLs"):
        to_conversation(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
        )
    with pytest.raises(ValueError, match="unsupported content part type 'audio'"):
        to_conversation([{"role": "user", "content": [{"type": "audio"}]}])
    with pytest.raises(TypeError):
        to_conversation(42)


def test_finish_reason_is_stop_at_eos_else_length():
    class Tok:
        @staticmethod
        def decode(ids, skip_special_tokens):
            return ",".join(map(str, ids))

    sut = HFTransformersSUT({"model": "tiny-qwen3"})
    sut._tokenizer, sut._eos = Tok(), {2}
    r = sut._to_response([5, 6, 2, 0, 0], 7)
    assert (r.data, r.n_tokens, r.n_input_tokens, r.finish_reason) == (b"5,6", 3, 7, "stop")
    r = sut._to_response([5, 6, 7], 4)
    assert (r.data, r.n_tokens, r.n_input_tokens, r.finish_reason) == (b"5,6,7", 3, 4, "length")


def test_issue_before_start_fails():
    sut = HFTransformersSUT({"model": "tiny-qwen3"})
    with pytest.raises(RuntimeError, match="before start"):
        asyncio.run(sut.issue(Query(id=0, indices=[0], samples=["x"])))


def test_tiny_causal_lm_batching_streaming_and_errors(cache):
    a = {"messages": [{"role": "user", "content": "red cotton shirts category brand"}]}
    b = {
        "messages": [
            {"role": "system", "content": "choose one category from the list"},
            {"role": "user", "content": "blue"},
        ]
    }
    bad = {"messages": [{"role": "user", "content": [{"type": "video_url"}]}]}

    async def main():
        sut = HFTransformersSUT({"model": "tiny-qwen3", "max_new_tokens": 10, "max_batch": 4})
        await sut.start(SUTContext("llm", "Offline", "AccuracyOnly"))
        alone = await sut.issue(Query(id=0, indices=[0], samples=[a], clock=CLOCK))
        q = Query(id=1, indices=[0, 1, 2, 3], samples=[a, b, bad, a], clock=CLOCK)
        batch = await sut.issue(q)
        singles = [Query(id=10 + k, indices=[k], samples=[s], clock=CLOCK) for k, s in enumerate((a, b))]
        server = await asyncio.gather(*(sut.issue(sq) for sq in singles))  # batched together by the batcher
        tok = sut._tokenizer
        prompts = [len(tok(tok.apply_chat_template(m["messages"], tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]) for m in (a, b)]
        await sut.stop()
        return alone[0], q, batch, singles, [r[0] for r in server], prompts

    alone, q, batch, singles, server, prompts = asyncio.run(main())
    # Prompt tokens of each row, padding excluded (a and b differ in length, so the batch pads one).
    assert [r.n_input_tokens for r in (alone, batch[0], batch[1], batch[3], *server)] == [
        prompts[0], prompts[0], prompts[1], prompts[0], prompts[0], prompts[1]]
    assert prompts == [21, 38]
    # The tiny random model never samples EOS within 10 tokens: every answer stops at the cap.
    assert {(r.n_tokens, r.finish_reason) for r in (alone, batch[0], batch[1], batch[3], *server)} == {(10, "length")}
    assert alone.error is None and alone.data
    # left padding: the same prompt gives the same greedy answer alone and in a mixed batch
    assert batch[0].data == batch[3].data == alone.data == server[0].data
    assert batch[1].data == server[1].data != alone.data
    assert batch[2].error == "bad sample: hf_transformers: unsupported content part type 'video_url'"
    for sq, r in zip(singles, server, strict=True):
        # one stamp per generated token before EOS (EOS itself is counted in n_tokens only)
        assert sq.first_token_ns == T0 and len(sq.token_ns) in (r.n_tokens, r.n_tokens - 1)
    # The batch query (rows a, b, bad, a) is stamped once per step while any of its rows still runs:
    # as often as the longer of its two distinct prompts alone, not once per row.
    assert q.first_token_ns == T0 and len(q.token_ns) == max(len(sq.token_ns) for sq in singles)


def test_tiny_qwen3_vl_on_demo_samples(cache):
    from raybench.core.spec import load_object
    from raybench.registry import get_workload, make_library

    WORKLOAD = get_workload("qwen3_vl")
    score = load_object(WORKLOAD.accuracy)
    library = make_library(WORKLOAD, {**WORKLOAD.params, "demo_samples": 8})
    library.load([0, 1])
    params = {**SUT_SPEC.params, **WORKLOAD.sut_params["hf_transformers"], "max_new_tokens": 12}
    vision_calls = []

    async def main():
        sut = HFTransformersSUT(params)
        await sut.start(
            SUTContext("qwen3_vl", "Server", "AccuracyOnly", workload_params=dict(WORKLOAD.params))
        )
        sut._model.model.visual.register_forward_hook(
            lambda mod, args, kwargs, out: vision_calls.append(kwargs["grid_thw"].tolist()), with_kwargs=True
        )
        queries = [Query(id=i, indices=[i], samples=[library.get(i)], clock=CLOCK) for i in (0, 1)]
        responses = await asyncio.gather(*(sut.issue(qq) for qq in queries))
        await sut.stop()
        return queries, [r[0] for r in responses]

    queries, responses = asyncio.run(main())
    # both images went through the vision tower in one batched call: grid (t, h, w) per image
    assert len(vision_calls) == 1 and len(vision_calls[0]) == 2
    for q, r in zip(queries, responses, strict=True):
        assert r.error is None and 1 <= r.n_tokens <= 12
        assert q.first_token_ns == T0 and len(q.token_ns) in (r.n_tokens, r.n_tokens - 1)
    res = score([(q.indices[0], r.data) for q, r in zip(queries, responses, strict=True)], library, {})
    assert res.metrics["unparsable"] == 2.0 and res.metrics["f1"] == 0.0 and res.passed is False


def test_stop_resolves_the_running_batch(cache):
    async def main():
        sut = HFTransformersSUT({"model": "tiny-qwen3", "max_new_tokens": 2000, "warmup": False})
        await sut.start(SUTContext("llm", "Server", "PerformanceOnly"))
        q = Query(id=0, indices=[0], samples=["tell me about red cotton shirts"], clock=CLOCK)
        task = asyncio.create_task(sut.issue(q))
        while not q.first_token_ns:  # generation is under way in the worker thread
            await asyncio.sleep(0.005)
        await sut.stop()
        return await task

    assert asyncio.run(main()) == [Response(error="SUT stopped")]
