"""SUT adapter for any OpenAI-compatible endpoint (vLLM, SGLang, TGI, TensorRT-LLM, managed APIs).

The system under test is just a URL, as in MLPerf Endpoints: the adapter turns each sample payload
into a ``/v1/completions`` or ``/v1/chat/completions`` request, streams the answer over SSE,
reports first-token and per-chunk times to the harness through the :class:`Query` hooks, and
returns the text (or token ids) and the output-token count.

Sample payloads (what a workload's ``SampleLibrary.get`` returns):

- ``{"prompt": str | list[int]}`` or ``{"messages": [...]}`` (chat), optionally with
  ``"max_tokens"`` and ``"params"`` (extra request fields for this sample);
- a bare ``str`` (prompt text) or ``list[int]`` (prompt token ids).

Output tokens come from the server's ``usage.completion_tokens`` (requested with
``stream_options.include_usage``); with ``tokenizer`` set they are counted client-side instead,
which is what MLPerf Endpoints does so that servers cannot misreport them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import validate_params
from reference_suts.openai_endpoint.params import OpenAIEndpointParams

from .client import Completion, EndpointClient, dumps

__all__ = ["OpenAIEndpointSUT"]

_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class OpenAIEndpointSUT:
    """Streams every sample to an OpenAI-compatible endpoint; one request per sample.

    Args:
        params: see :class:`~reference_suts.openai_endpoint.params.OpenAIEndpointParams` (and the README).

    Raises:
        ParamsError: one line naming an unknown or ill-typed parameter, or an API key passed in ``params``.

    Example:
        >>> sut = OpenAIEndpointSUT({"urls": ["http://gpu-0:8000"], "model": "m"})
        >>> await sut.start(ctx); [r] = await sut.issue(query); await sut.stop()  # doctest: +SKIP
    """

    name = "openai_endpoint"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = validate_params(OpenAIEndpointParams, params, "sut.params")
        self.params: dict[str, Any] = p
        """Resolved parameters (safe to log: they never contain the API key)."""
        self.max_batch = int(p["max_batch"])
        self.max_inflight = int(p["max_inflight"])
        self._chat = p["api"] == "chat"
        self._path = _PATHS[p["api"]]
        self._client: EndpointClient | None = None
        self._tokenizer: Any = None
        self._has_key = False
        # cache_salt: a random prefix per SUT instance (so shards differ) plus a counter.
        self._salt = itertools.count() if p["cache_salt"] else None
        self._salt_prefix = secrets.token_hex(6)
        # Validate URLs now so that a bad config fails before any actor starts.
        EndpointClient(p["urls"], max_inflight=self.max_inflight, balance=p["balance"])

    def __repr__(self) -> str:
        p = self.params
        key = "***" if self._has_key else None
        return (
            f"OpenAIEndpointSUT(urls={p['urls']!r}, api={p['api']!r}, model={p['model']!r}, "
            f"api_key_env={p['api_key_env']!r}, api_key={key!r})"
        )

    __str__ = __repr__

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, ctx: SUTContext | None = None) -> None:
        """Read the API key, open and warm the connection pool, resolve the model name.

        Raises:
            RuntimeError: when the key's env var is unset, an endpoint is unreachable, or the
                model cannot be discovered.
        """
        p = self.params
        headers: dict[str, str] = {}
        secret = ""
        if p["api_key_env"]:
            secret = os.environ.get(p["api_key_env"], "")
            if not secret:
                raise RuntimeError(f"api_key_env: environment variable {p['api_key_env']} is not set")
            headers["Authorization"] = f"Bearer {secret}"
            self._has_key = True
        client = EndpointClient(
            p["urls"],
            headers=headers,
            timeout_s=p["timeout_s"],
            connect_timeout_s=p["connect_timeout_s"],
            connections=int(p["connections"]),
            max_inflight=self.max_inflight,
            balance=p["balance"],
            **{k: p[k] for k in ("follow_redirects", "proxy", "ca_bundle", "verify_tls")},
        )
        client.secrets = (secret,) if secret else ()
        try:
            await client.start()
            if p["model"] is None:
                models = await client.get_json("/v1/models")
                try:
                    p["model"] = models["data"][0]["id"]
                except (KeyError, IndexError, TypeError):
                    raise RuntimeError(f"model: not set and GET /v1/models returned no model ({p['urls'][0]})") from None
        except ConnectionError as exc:
            await client.close()
            raise RuntimeError(str(exc)) from None
        if p["tokenizer"]:
            self._tokenizer = await asyncio.to_thread(_load_tokenizer, p["tokenizer"])
        self._client = client
        # Request fields shared by every sample, serialized around the per-sample part.
        base: dict[str, Any] = {"model": p["model"], "max_tokens": p["max_tokens"], "temperature": p["temperature"]}
        if p["stream"]:
            base["stream"] = True
            base["stream_options"] = {"include_usage": True}
        base.update(p["extra_body"])
        self._base = base

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- issue ---------------------------------------------------------------------------------

    async def issue(self, query: Query) -> Sequence[Response]:
        """Send every sample of ``query``; token hooks fire only for single-sample queries."""
        samples = query.samples
        if len(samples) == 1:
            return [await self._one(samples[0], query)]
        return list(await asyncio.gather(*(self._one(s, None) for s in samples)))

    async def _one(self, sample: Any, query: Query | None) -> Response:
        client = self._client
        if client is None:
            return Response(error="sut not started")
        try:
            chat, body = self._body(sample)
        except ValueError as exc:
            return Response(error=f"bad sample: {exc}")
        path = _PATHS["chat"] if chat else self._path
        if query is not None and query.clock is not None and self.params["stream"]:
            keep = self._first_token_data(query) if query.want_token_data else None
            c = await client.request(path, body, chat=chat, first=query.first_token, chunk=query.token, first_data=keep)
        else:
            c = await client.request(path, body, chat=chat, stream=self.params["stream"])
        if query is not None:
            if c.finish_reason is not None:
                query.extra["finish_reason"] = c.finish_reason
            if c.prompt_tokens is not None:
                query.extra["prompt_tokens"] = c.prompt_tokens
        if c.error is not None:
            return Response(error=c.error)
        r = self._response(c)
        # Input tokens and finish reason travel with the response too (multi-sample queries have
        # no Query hooks; a remote replica returns only the Response).
        r.n_input_tokens = int(c.prompt_tokens or 0)
        r.finish_reason = c.finish_reason
        return r

    def _first_token_data(self, query: Query) -> Callable[[str, list[int] | None], None]:
        """The hook that hands the first chunk to ``query.first_token`` encoded as the answer is
        (the accuracy log's ``token_data``): ``response_format: token_ids`` -> the chunk's token ids
        as int32 when the server sent them (vLLM ``return_token_ids``), else its text through the
        tokenizer (nothing without one); ``text`` -> the chunk's UTF-8 text."""

        def keep(text: str, ids: list[int] | None) -> None:
            if self.params["response_format"] != "token_ids":
                query.first_token(text.encode("utf-8"))
            elif ids:
                query.first_token(array("i", ids).tobytes())
            elif self._tokenizer is not None:
                query.first_token(array("i", self._tokenizer.encode(text, add_special_tokens=False)).tobytes())

        return keep

    def _body(self, sample: Any) -> tuple[bool, bytes]:
        """``(chat, JSON body)`` of one sample.

        A ``messages`` payload always goes to ``/v1/chat/completions``, whatever ``api`` says:
        chat messages (and the images they carry as ``image_url`` data URLs, e.g. qwen3_vl's)
        exist only in the chat API. A ``None`` field (``max_tokens``, ``temperature``, a
        payload's ``max_tokens``) is not sent, so the server's defaults apply.
        """
        chat, req = self._request(sample)
        return chat, dumps(self._salted({k: v for k, v in req.items() if v is not None}))

    def _salted(self, req: dict[str, Any]) -> dict[str, Any]:
        """Add vLLM's ``cache_salt`` (distinct per request) so repeated prompts miss the prefix cache."""
        if self._salt is not None:
            req["cache_salt"] = f"{self._salt_prefix}-{next(self._salt)}"
        return req

    def _request(self, sample: Any) -> tuple[bool, dict[str, Any]]:
        req = dict(self._base)
        if isinstance(sample, dict):
            if "max_tokens" in sample:
                req["max_tokens"] = sample["max_tokens"]
            extra = sample.get("params")
            if extra:
                req.update(extra)
            if "messages" in sample:
                messages = sample["messages"]
                if not isinstance(messages, list) or not messages:
                    raise ValueError("'messages' must be a non-empty list of chat messages")
                req["messages"] = messages
                return True, req
            if "prompt" not in sample:
                raise ValueError("payload has neither 'prompt' nor 'messages'")
            sample = sample["prompt"]
        self._put_prompt(req, sample)
        return self._chat, req

    def _put_prompt(self, req: dict[str, Any], prompt: Any) -> None:
        if isinstance(prompt, str):
            if self._chat:
                req["messages"] = [{"role": "user", "content": prompt}]
            else:
                req["prompt"] = prompt
        elif isinstance(prompt, list | tuple) or hasattr(prompt, "tolist"):
            if self._chat:
                raise ValueError("token-id prompts need api: completions")
            req["prompt"] = [int(t) for t in (prompt.tolist() if hasattr(prompt, "tolist") else prompt)]
        else:
            raise ValueError(f"prompt must be str or token ids, got {type(prompt).__name__}")

    def _response(self, c: Completion) -> Response:
        """Output tokens: ``auto`` = client tokenizer if set, else server usage, else server
        token ids, else the number of non-empty chunks (a lower bound when chunks hold several)."""
        p = self.params
        tok = self._tokenizer
        client_ids = tok.encode(c.text, add_special_tokens=False) if tok is not None else None
        mode = p["token_count"]
        if mode == "usage":
            if c.completion_tokens is None:
                return Response(error="token_count usage: server sent no usage")
            n = int(c.completion_tokens)
        elif mode == "chunks":
            n = c.n_chunks
        elif client_ids is not None:
            n = len(client_ids)
        elif c.completion_tokens is not None:
            n = int(c.completion_tokens)
        elif c.token_ids:
            n = len(c.token_ids)
        else:
            n = c.n_chunks
        if p["response_format"] == "token_ids":
            ids = c.token_ids or client_ids
            if ids is None:
                return Response(
                    error="response_format token_ids: server sent no token_ids "
                    "(set extra_body.return_token_ids for vLLM, or a tokenizer)"
                )
            return Response(data=array("i", ids).tobytes(), n_tokens=n)
        return Response(data=c.text.encode("utf-8"), n_tokens=n)


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)
