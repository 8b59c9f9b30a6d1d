"""Reference SUT: any OpenAI-compatible HTTP endpoint, streamed over SSE (see README.md)."""

from __future__ import annotations

from raybench.core.spec import SUTSpec

SUT_SPEC = SUTSpec(
    name="openai_endpoint",
    description="Any OpenAI-compatible endpoint (vLLM, SGLang, TGI, managed APIs) over streaming HTTP",
    entry="reference_suts.openai_endpoint.sut:OpenAIEndpointSUT",
    extra=None,  # stdlib transport; aiohttp only for the tests' scripted server
    params={
        "urls": ["http://127.0.0.1:8000"],
        "api": "completions",
        "model": None,
        "stream": True,
        "max_tokens": 128,
        "temperature": 0.0,
        "response_format": "text",
        "api_key_env": None,
        "timeout_s": 600.0,
        "connections": 16,
        "max_inflight": 1024,
        "balance": "least_outstanding",
    },
    # On Ray the HTTP client runs inside each load-generator shard (a connection pool per shard).
    inline=True,
)
