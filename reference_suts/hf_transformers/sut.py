"""Hugging Face Transformers reference SUT: any causal LM or image-text-to-text model, in-process.

Samples are OpenAI-style chat requests (``{"messages": [...]}``, a message list, or a plain
prompt string). Image parts (``image_url`` with a ``data:`` URL, as the Qwen3-VL workload
sends) are decoded to PIL images and handed to the model's processor, so the model sees the
dataset's original image; the processor does the model's own resizing.

How it runs:

* ``start()`` loads the model (local path only unless ``allow_download``; the hub is put in
  offline mode), seeds torch and runs a 2-token warm-up.
* ``issue()`` enqueues each sample with a future. One batcher task takes up to ``max_batch``
  queued samples (waiting at most ``batch_wait_ms`` for more after the first), runs one
  ``model.generate`` on them in a worker thread (``asyncio.to_thread``), and resolves the
  futures. So the event loop never blocks, the model runs one batch at a time, and Server
  queries that arrive together are batched together.
* Streaming: a streamer receives every decoding step from ``generate`` (in the worker thread)
  and, for each query with a still-running row, schedules ``query.token()`` on the event loop
  with ``loop.call_soon_threadsafe`` — the harness's clock is read on its own thread, when the
  step's tokens exist. The first call is the query's TTFT.
* A response is the generated text up to the first EOS (special tokens skipped), UTF-8;
  ``n_tokens`` counts the generated tokens including that EOS (like vLLM's
  ``usage.completion_tokens``), excluding padding. ``finish_reason`` is ``stop`` when an EOS
  ended it, else ``length``; ``n_input_tokens`` is the prompt's token count (its attention mask,
  padding excluded).

Decoding is greedy unless ``do_sample`` is true (then ``temperature``/``top_p``/``top_k``/
``min_p`` apply); ``seed`` seeds torch once at start.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from reference_suts.hf_transformers.params import HFTransformersParams

__all__ = ["HFTransformersSUT", "to_conversation"]

log = logging.getLogger(__name__)


def _decode_image(url: str) -> Any:
    """PIL image from a ``data:`` URL or a local path (remote URLs are never fetched)."""
    from PIL import Image

    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if not header.endswith(";base64"):
            raise ValueError("hf_transformers: only base64 data URLs are supported for images")
        data = base64.b64decode(payload)
    elif url.startswith(("http://", "https://")):
        raise ValueError("hf_transformers: remote image URLs are not fetched; send a base64 data URL")
    else:
        data = Path(url.removeprefix("file://")).read_bytes()
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def to_conversation(sample: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Convert an OpenAI chat request to a Transformers conversation plus its images.

    Args:
        sample: ``{"messages": [...]}``, a list of messages, or a prompt string.

    Returns:
        ``(conversation, images)``: content parts become ``{"type": "text"}`` /
        ``{"type": "image"}`` (the chat template's image placeholder) and ``images`` holds the
        decoded PIL images in order of appearance.

    Raises:
        ValueError / TypeError: on an unsupported sample or content part.
    """
    if isinstance(sample, str):
        messages: Sequence[Any] = [{"role": "user", "content": sample}]
    elif isinstance(sample, dict) and "messages" in sample:
        messages = sample["messages"]
    elif isinstance(sample, list):
        messages = sample
    else:
        raise TypeError(
            f"hf_transformers: cannot use a sample of type {type(sample).__name__} as a chat request"
        )
    conv: list[dict[str, Any]] = []
    images: list[Any] = []
    for msg in messages:
        content = msg.get("content")
        if content is None or isinstance(content, str):
            conv.append({"role": msg["role"], "content": content or ""})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                ref = part["image_url"]
                images.append(_decode_image(ref["url"] if isinstance(ref, dict) else ref))
                parts.append({"type": "image"})
            elif kind == "image":
                img = part.get("image")
                images.append(img if img is not None else _decode_image(part.get("url") or part["path"]))
                parts.append({"type": "image"})
            else:
                raise ValueError(f"hf_transformers: unsupported content part type {kind!r}")
        conv.append({"role": msg["role"], "content": parts})
    return conv, images


def _text_only(conv: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten list contents to strings (for tokenizer-only chat templates); images are dropped."""
    out = []
    for msg in conv:
        content = msg["content"]
        if not isinstance(content, str):
            content = "".join(p["text"] for p in content if p["type"] == "text")
        out.append({"role": msg["role"], "content": content})
    return out


class _StepStreamer:
    """Receives ``generate``'s token steps (worker thread) and stamps the owning queries.

    ``generate`` first puts the prompt ids (skipped), then one tensor of shape ``(batch,)`` per
    decoding step. A row stops counting after its first EOS (what follows is padding).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queries: list[Query], eos_ids: set[int]) -> None:
        self._loop = loop
        self._queries = queries
        self._eos = eos_ids
        self._done = [False] * len(queries)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        stamped: dict[int, Query] = {}
        for row, tok in enumerate(tokens[: len(self._done)]):
            if self._done[row]:
                continue
            if tok in self._eos:
                self._done[row] = True
                continue
            stamped.setdefault(id(self._queries[row]), self._queries[row])
        for q in stamped.values():
            try:
                self._loop.call_soon_threadsafe(q.token)
            except RuntimeError:  # loop closed during shutdown
                return

    def end(self) -> None:
        pass


@dataclass
class _Item:
    query: Query
    sample: Any
    future: asyncio.Future[Response]
    conv: list[dict[str, Any]] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)


class HFTransformersSUT:
    """In-process Transformers SUT (see the module docstring).

    Example:
        >>> sut = HFTransformersSUT({"model": "tiny-qwen3-vl", "max_new_tokens": 8})
        >>> await sut.start(ctx); responses = await sut.issue(query); await sut.stop()  # doctest: +SKIP
    """

    name = "hf_transformers"

    def __init__(self, params: dict[str, Any]) -> None:
        self.cfg = parse_params(HFTransformersParams, params, "sut.params")
        self.max_batch = self.cfg.max_batch
        self.max_inflight = self.cfg.max_inflight
        self._model: Any = None
        self._processor: Any = None  # multimodal processor (None for a causal LM)
        self._tokenizer: Any = None
        self._device: Any = None
        self._eos: set[int] = set()
        self._pad: int | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._running: list[_Item] = []  # the batch inside generate, resolved by stop() if cut short
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self, ctx: SUTContext) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._load)
        if self.cfg.warmup:
            probe = Query(id=-1, indices=[0], samples=["warm-up"])
            await asyncio.to_thread(self._run_batch, [_Item(probe, "warm-up", self._loop.create_future())], 2)
        self._queue = asyncio.Queue()
        self._batcher = asyncio.create_task(self._batch_loop(), name="hf_transformers-batcher")

    async def stop(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        pending = list(self._running)
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_result(Response(error="SUT stopped"))
        self._running = []
        self._model = self._processor = self._tokenizer = None

    async def issue(self, query: Query) -> Sequence[Response]:
        if self._queue is None or self._loop is None:
            raise RuntimeError("hf_transformers: issue() called before start()")
        futures = []
        for sample in query.samples:
            fut: asyncio.Future[Response] = self._loop.create_future()
            self._queue.put_nowait(_Item(query, sample, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    # ----------------------------------------------------------------- loading
    def _resolve_model(self) -> str:
        from .tiny import TINY_MODELS, ensure_tiny_model

        if self.cfg.model in TINY_MODELS:
            return str(ensure_tiny_model(self.cfg.model))
        path = Path(self.cfg.model).expanduser()
        if path.exists():
            return str(path)
        if not self.cfg.allow_download:
            raise FileNotFoundError(
                f"hf_transformers: model {self.cfg.model!r} is not a local directory; "
                "set allow_download=true to fetch it from the hub"
            )
        return self.cfg.model

    def _load(self) -> None:
        if not self.cfg.allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        torch.manual_seed(self.cfg.seed)
        src = self._resolve_model()
        common: dict[str, Any] = {
            "revision": self.cfg.revision,
            "trust_remote_code": self.cfg.trust_remote_code,
            "local_files_only": not self.cfg.allow_download,
        }
        model_type = self.cfg.model_type
        if model_type == "auto":
            config = AutoConfig.from_pretrained(src, **common)
            vlm = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            model_type = "image_text_to_text" if vlm else "causal_lm"
        load_kw: dict[str, Any] = {
            "dtype": self.cfg.dtype if self.cfg.dtype == "auto" else getattr(torch, self.cfg.dtype)
        }
        if self.cfg.attn_implementation:
            load_kw["attn_implementation"] = self.cfg.attn_implementation
        if self.cfg.device_map:
            load_kw["device_map"] = self.cfg.device_map
        if model_type == "image_text_to_text":
            model = AutoModelForImageTextToText.from_pretrained(src, **common, **load_kw)
            self._processor = AutoProcessor.from_pretrained(src, **common)
            self._tokenizer = self._processor.tokenizer
        else:
            model = AutoModelForCausalLM.from_pretrained(src, **common, **load_kw)
            self._tokenizer = AutoTokenizer.from_pretrained(src, **common)
        self._tokenizer.padding_side = "left"  # decoder-only batching: prompts end where generation starts
        if not self.cfg.device_map:
            device = self.cfg.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            model = model.to(device)
        model.eval()
        self._device = model.device
        self._model = model
        gen_eos = model.generation_config.eos_token_id
        eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        self._eos = {int(e) for e in [*eos, self._tokenizer.eos_token_id] if e is not None}
        pad = model.generation_config.pad_token_id
        if pad is None:
            pad = self._tokenizer.pad_token_id
        self._pad = pad if pad is not None else min(self._eos, default=0)

    # ----------------------------------------------------------------- batching
    async def _batch_loop(self) -> None:
        assert self._queue is not None and self._loop is not None
        wait_s = self.cfg.batch_wait_ms / 1000.0
        while True:
            items = [await self._queue.get()]
            deadline = self._loop.time() + wait_s
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            items = [it for it in items if not it.future.done()]  # drop cancelled issues
            if not items:
                continue
            self._running = items
            try:
                responses = await asyncio.to_thread(self._run_batch, items, self.cfg.max_new_tokens)
            except Exception as exc:  # a failed batch fails its samples, not the SUT
                log.exception("hf_transformers: generate failed")
                responses = [Response(error=f"{type(exc).__name__}: {exc}")] * len(items)
            self._running = []
            for it, resp in zip(items, responses, strict=True):
                if not it.future.done():
                    it.future.set_result(resp)

    def _generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        cfg = self.cfg
        gen = self._model.generation_config.__class__.from_dict(self._model.generation_config.to_dict())
        gen.max_new_tokens = max_new_tokens
        gen.pad_token_id = self._pad
        gen.do_sample = cfg.do_sample
        sampling = {
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "top_k": cfg.top_k,
            "min_p": cfg.min_p,
        }
        for key, value in sampling.items():
            if not cfg.do_sample:
                setattr(gen, key, None)  # greedy: sampling knobs from generation_config are moot
            elif value is not None:
                setattr(gen, key, value)
        if cfg.repetition_penalty is not None:
            gen.repetition_penalty = cfg.repetition_penalty
        return {"generation_config": gen}

    def _run_batch(self, items: list[_Item], max_new_tokens: int) -> list[Response]:
        """Generate for ``items`` (worker thread). Bad samples get an error response each."""
        import torch

        responses: list[Response | None] = [None] * len(items)
        ok: list[int] = []
        for i, it in enumerate(items):
            try:
                it.conv, it.images = to_conversation(it.sample)
                ok.append(i)
            except (ValueError, TypeError, KeyError, OSError) as exc:
                responses[i] = Response(error=f"bad sample: {exc}")
        if ok:
            batch = [items[i] for i in ok]
            enc = self._encode(batch)
            prompt_len = enc["input_ids"].shape[1]
            streamer = None
            if self.cfg.stream and self._loop is not None:
                streamer = _StepStreamer(self._loop, [it.query for it in batch], self._eos)
            with torch.inference_mode():
                out = self._model.generate(
                    **enc, **self._generation_kwargs(max_new_tokens), streamer=streamer
                )
            # Prompt tokens per row: the attention mask's ones (padding excluded; image tokens counted).
            mask = enc.get("attention_mask") if hasattr(enc, "get") else None
            n_in = mask.sum(dim=1).tolist() if mask is not None else [prompt_len] * len(batch)
            for i, row, n in zip(ok, out[:, prompt_len:].tolist(), n_in, strict=True):
                responses[i] = self._to_response(row, int(n))
        return [r if r is not None else Response(error="internal: no response") for r in responses]

    def _encode(self, batch: list[_Item]) -> Any:
        if self._processor is not None:
            texts = [
                self._processor.apply_chat_template(it.conv, tokenize=False, add_generation_prompt=True)
                for it in batch
            ]
            images = [img for it in batch for img in it.images]
            enc = self._processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        else:
            tok = self._tokenizer
            if tok.chat_template:
                texts = [
                    tok.apply_chat_template(_text_only(it.conv), tokenize=False, add_generation_prompt=True)
                    for it in batch
                ]
            else:  # base LM without a chat template: plain concatenation
                texts = ["\n\n".join(m["content"] for m in _text_only(it.conv)) for it in batch]
            enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        return enc.to(self._device)

    def _to_response(self, row: list[int], n_input: int = 0) -> Response:
        """The row's answer up to its first EOS; ``finish_reason`` ``stop`` when an EOS ended it,
        else ``length`` (``max_new_tokens`` reached), as a vLLM server reports them."""
        n = len(row)
        for j, tok in enumerate(row):
            if tok in self._eos:
                n = j
                break
        text = self._tokenizer.decode(row[:n], skip_special_tokens=True)
        stopped = n < len(row)
        return Response(data=text.encode("utf-8"), n_tokens=n + (1 if stopped else 0), n_input_tokens=n_input,
                        finish_reason="stop" if stopped else "length")
