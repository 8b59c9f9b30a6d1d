"""Reference SUT: any OpenAI-compatible HTTP endpoint, streamed over SSE (see README.md)."""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.openai_endpoint.params import OpenAIEndpointParams

SUT_SPEC = SUTSpec(
    name="openai_endpoint",
    description="Any OpenAI-compatible endpoint (vLLM, SGLang, TGI, managed APIs) over streaming HTTP",
    entry="reference_suts.openai_endpoint.sut:OpenAIEndpointSUT",
    extra=None,  # stdlib transport; aiohttp only for the tests' scripted server
    params_model=OpenAIEndpointParams,
    # On Ray the HTTP client runs inside each load-generator shard (a connection pool per shard).
    inline=True,
)
