"""vLLM engine mode: vLLM's ``AsyncLLM`` inside the SUT (on Ray: inside each replica actor).

For clusters where vLLM is installed beside raybench. No HTTP hop: each query becomes one
``engine.generate(prompt, SamplingParams(output_kind=DELTA), request_id)`` stream, and every
delta that carries new tokens calls ``query.token()``, so TTFT and TPOT are measured when vLLM
hands the tokens over (on Ray, the replica forwards the marks to the shard's clock). For an
accuracy-logged query the first delta's tokens go with the mark (``query.token(data)``, encoded as
the answer). Each response reports the prompt's token count (``prompt_token_ids``) and vLLM's
``finish_reason`` (``stop``, ``length``, ...). This is
what the MLPerf Llama 3.1 8B reference does in its Server SUT (``AsyncLLMEngine``, greedy,
``max_tokens=128``, ``min_tokens=1``).

Sample payloads are those of the ``openai_endpoint`` SUT: ``{"prompt": str | list[int]}``,
``{"messages": [...]}`` (rendered with the tokenizer's chat template; ``image_url`` parts given
as base64 data URLs, e.g. qwen3_vl's, are passed to vLLM as ``multi_modal_data``), a bare ``str``
or a list of token ids; a payload may carry ``max_tokens`` and ``params`` (extra SamplingParams
fields).

vLLM is imported in :meth:`VllmEngineSUT.start` only, so this module imports without it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
from array import array
from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import validate_params
from reference_suts.vllm.params import VllmEngineParams

__all__ = ["EngineDiedError", "VllmEngineSUT", "engine_kwargs", "prompt_input", "sampling_kwargs"]

class EngineDiedError(RuntimeError):
    """vLLM's engine core died (``fatal``: stop the run instead of failing every later query)."""

    fatal = True


def engine_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """``AsyncEngineArgs`` keyword arguments from SUT parameters (unset options are left to vLLM)."""
    kw: dict[str, Any] = {"model": str(params["model"]), "tensor_parallel_size": int(params["tensor_parallel_size"])}
    for key in ("max_model_len", "max_num_seqs", "gpu_memory_utilization"):
        if params.get(key):
            kw[key] = params[key]
    if params.get("dtype"):
        kw["dtype"] = params["dtype"]
    if params.get("enforce_eager"):
        kw["enforce_eager"] = True
    if params.get("enable_prefix_caching") is not None:
        kw["enable_prefix_caching"] = bool(params["enable_prefix_caching"])
    kw.update(params.get("engine_args") or {})
    return kw


def sampling_kwargs(params: dict[str, Any], sample: Any, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for one sample (output kind excluded).

    Greedy by default (``temperature 0``); a payload's ``max_tokens`` and ``params`` win over the
    SUT's. ``temperature: None`` takes the model's ``generation_config`` sampling fields
    (``defaults``: what a vLLM server applies to a request that sends no sampling fields, as the
    MLPerf Qwen3-VL reference does); ``max_tokens: None`` is passed as ``None``, which vLLM's input
    processor turns into ``max_model_len - prompt length``, as its server does for a request
    without ``max_tokens`` (leaving it out would give ``SamplingParams``' default of 16).
    """
    kw: dict[str, Any] = {}
    if params["temperature"] is None:
        kw.update(defaults or {})
    else:
        kw["temperature"] = float(params["temperature"])
    if params["max_tokens"] is not None:
        kw["max_tokens"] = int(params["max_tokens"])
    else:  # the generation_config's max_new_tokens when it has one (vLLM's server caps by it too)
        kw.setdefault("max_tokens", None)
    kw["min_tokens"] = int(params["min_tokens"])
    if params.get("ignore_eos"):
        kw["ignore_eos"] = True
    kw.update(params.get("sampling") or {})
    if isinstance(sample, dict):
        if sample.get("max_tokens") is not None:
            kw["max_tokens"] = int(sample["max_tokens"])
        kw.update(sample.get("params") or {})
    return kw


def _image_parts(messages: list[Any]) -> tuple[list[Any], list[bytes]]:
    """Messages with every ``image_url`` part replaced by ``{"type": "image"}`` (what HF chat
    templates render as the model's image placeholder), and the decoded image bytes in order.

    Raises:
        ValueError: an image URL that is not a base64 ``data:`` URL (engine mode fetches nothing).
    """
    out: list[Any] = []
    images: list[bytes] = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            out.append(m)
            continue
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                head, sep, data = url.partition(",")
                if not (head.startswith("data:") and head.endswith(";base64") and sep):
                    raise ValueError(f"image_url: engine mode takes base64 data URLs only, got {url[:40]!r}")
                try:
                    images.append(base64.b64decode(data, validate=True))
                except binascii.Error as exc:
                    raise ValueError(f"image_url: bad base64 data ({exc})") from None
                parts.append({"type": "image"})
            else:
                parts.append(part)
        out.append({**m, "content": parts})
    return out, images


def prompt_input(sample: Any, chat: bool, tokenizer: Any = None) -> Any:
    """The prompt vLLM's ``generate`` takes: text, ``{"prompt_token_ids": [...]}``, or for chat
    messages with images ``{"prompt": text, "multi_modal_data": {"image": [PIL images]}}``.

    Chat messages go through the tokenizer's chat template whatever ``api`` says (only chat
    messages can carry them); their ``image_url`` parts (base64 data URLs, as the qwen3_vl
    payload sends) become the template's image placeholders plus decoded images.

    Raises:
        ValueError: a payload with neither prompt nor messages, chat messages without a tokenizer,
            an image that is not a base64 data URL, or a prompt of the wrong type.
    """
    if isinstance(sample, dict):
        if "messages" in sample:
            if tokenizer is None:
                raise ValueError("chat messages need the model's tokenizer")
            messages, images = _image_parts(list(sample["messages"]))
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            if not images:
                return text
            return {"prompt": text, "multi_modal_data": {"image": [_pil(b) for b in images]}}
        if "prompt" not in sample:
            raise ValueError("payload has neither 'prompt' nor 'messages'")
        sample = sample["prompt"]
    if isinstance(sample, bytes):
        sample = list(sample)
    if isinstance(sample, str):
        if chat and tokenizer is not None:
            return tokenizer.apply_chat_template([{"role": "user", "content": sample}], add_generation_prompt=True, tokenize=False)
        return sample
    if hasattr(sample, "tolist"):
        sample = sample.tolist()
    if isinstance(sample, list | tuple):
        return {"prompt_token_ids": [int(t) for t in sample]}
    raise ValueError(f"prompt must be str or token ids, got {type(sample).__name__}")


def _pil(data: bytes) -> Any:
    """Decode image bytes with PIL (what vLLM's multi-modal processors take)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # PIL raises several types for bad data
        raise ValueError(f"image_url: not a decodable image ({type(exc).__name__})") from None
    return img


class VllmEngineSUT:
    """SUT ``vllm`` in engine mode (``mode: engine``).

    Args:
        params: see :class:`~reference_suts.vllm.params.VllmEngineParams`.

    Raises:
        ParamsError: missing ``model``, unknown keys or bad choices (one line).
    """

    name = "vllm-engine"
    streaming = True

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = validate_params(VllmEngineParams, params, "sut.params")
        self.params = p
        self.max_batch = int(p["max_batch"])
        self.max_inflight = int(p["max_inflight"])
        self.engine: Any = None
        self.tokenizer: Any = None
        self._sp_cls: Any = None
        self._delta: Any = None
        self._ids = itertools.count()
        self._prefix = "q"
        self._gen_defaults: dict[str, Any] = {}

    def _make_engine(self) -> tuple[Any, Any, Any]:
        """Build ``(engine, SamplingParams class, RequestOutputKind.DELTA)`` (imports vLLM)."""
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind

        try:
            from vllm.v1.engine.async_llm import AsyncLLM as Engine
        except ImportError:  # older vLLM
            from vllm.engine.async_llm_engine import AsyncLLMEngine as Engine  # type: ignore[no-redef]
        engine = Engine.from_engine_args(AsyncEngineArgs(**engine_kwargs(self.params)))
        return engine, SamplingParams, RequestOutputKind.DELTA

    async def start(self, ctx: SUTContext) -> None:
        """Create the engine (loads the model) and its tokenizer for chat templates."""
        self._prefix = f"s{ctx.shard}"
        self.engine, self._sp_cls, self._delta = await asyncio.to_thread(self._make_engine)
        # The tokenizer renders chat messages, which any payload may carry (api picks only how a
        # bare prompt is treated).
        tok = getattr(self.engine, "tokenizer", None)
        if tok is None and hasattr(self.engine, "get_tokenizer"):
            tok = self.engine.get_tokenizer()
            if asyncio.iscoroutine(tok):
                tok = await tok
        self.tokenizer = tok
        # The model's generation_config sampling fields, for temperature: None (vLLM >= 0.6).
        get_diff = getattr(getattr(self.engine, "model_config", None), "get_diff_sampling_param", None)
        self._gen_defaults = dict(get_diff()) if callable(get_diff) else {}

    async def issue(self, query: Query) -> Sequence[Response]:
        """Generate every sample of ``query``; token marks only for single-sample queries."""
        if self.engine is None:
            raise RuntimeError("vllm engine SUT not started")
        if len(query.samples) == 1:
            return [await self._one(query.samples[0], query)]
        return list(await asyncio.gather(*(self._one(s, None) for s in query.samples)))

    async def _one(self, sample: Any, query: Query | None) -> Response:
        p = self.params
        try:
            prompt = prompt_input(sample, p["api"] == "chat", self.tokenizer)
            sp = self._sp_cls(output_kind=self._delta, **sampling_kwargs(p, sample, self._gen_defaults))
        except (ValueError, TypeError) as exc:
            return Response(error=f"bad sample: {exc}")
        rid = f"{self._prefix}-{next(self._ids)}"
        ids: list[int] = []
        text: list[str] = []
        n_in, finish = 0, None
        try:
            async for out in self.engine.generate(prompt, sp, rid):
                comp = out.outputs[0]
                if not n_in:  # vLLM sends the prompt's ids with the request's outputs
                    n_in = len(getattr(out, "prompt_token_ids", None) or ())
                new = list(comp.token_ids or ())
                if new:
                    if query is not None:
                        if not ids and query.want_token_data:  # the accuracy log's token_data
                            query.token(self._encode(new, comp.text or ""))
                        else:
                            query.token()
                    ids.extend(new)
                    text.append(comp.text or "")
                finish = getattr(comp, "finish_reason", None) or finish
                if out.finished:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if getattr(self.engine, "errored", False):
                raise EngineDiedError(f"vLLM engine died: {type(exc).__name__}: {exc}") from None
            return Response(error=f"vllm: {type(exc).__name__}: {str(exc)[:200]}")
        if not n_in and isinstance(prompt, dict) and prompt.get("prompt_token_ids"):
            n_in = len(prompt["prompt_token_ids"])
        return Response(data=self._encode(ids, "".join(text)), n_tokens=len(ids), n_input_tokens=n_in,
                        finish_reason=str(finish) if finish else None)

    def _encode(self, ids: list[int], text: str) -> bytes:
        """An answer (or its first token) as ``response_format`` says: int32 token ids or UTF-8 text."""
        if self.params["response_format"] == "token_ids":
            return array("i", ids).tobytes()
        return text.encode("utf-8")

    async def stop(self) -> None:
        """Shut the engine down (its core processes exit)."""
        engine, self.engine = self.engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            res = engine.shutdown()
            if asyncio.iscoroutine(res):
                await res
