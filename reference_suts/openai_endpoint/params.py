"""Parameters of the openai_endpoint SUT, and the HTTP-client part the vllm SUT reuses (pydantic only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from raybench.core.spec import Params

__all__ = ["EndpointClientParams", "OpenAIEndpointParams"]


class EndpointClientParams(Params):
    """How requests are built, streamed and counted (everything but where the endpoint is)."""

    api: Literal["completions", "chat"] = "completions"
    """``/v1/completions`` or ``/v1/chat/completions``."""
    stream: bool = True
    """Stream the answer over SSE (first-token and per-chunk times)."""
    max_tokens: int | None = Field(128, ge=1)
    """Output-token limit per request (``None`` = not sent: the server's default)."""
    temperature: float | None = Field(0.0, ge=0)
    """Sampling temperature (``None`` = not sent)."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Fields merged into every request, e.g. ``{"return_token_ids": true}`` for vLLM."""
    response_format: Literal["text", "token_ids"] = "text"
    """Response bytes: UTF-8 text, or int32 token ids (as MLPerf LLM accuracy logs)."""
    token_count: Literal["auto", "usage", "tokenizer", "chunks"] = "auto"
    """Where output-token counts come from (``auto``: tokenizer, else usage, else ids, else chunks)."""
    tokenizer: str | None = Field(None, validate_default=True)
    """HF tokenizer name or path for client-side token counts and ids (MLPerf Endpoints style)."""
    timeout_s: float = Field(600.0, gt=0)
    """Per-request timeout."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """Connection timeout."""
    connections: int = Field(16, ge=0)
    """Keep-alive sockets opened per URL at start."""
    max_inflight: int = Field(1024, ge=1)
    """Requests in flight at once (per SUT instance)."""
    balance: Literal["least_outstanding", "round_robin"] = "least_outstanding"
    """How requests are spread over several URLs."""
    max_batch: int = Field(1, ge=1)
    """Samples per Offline call (each still one request)."""
    follow_redirects: int = Field(5, ge=0)
    """Redirect hops followed per request (0 = none); a POST follows only 307/308 (same body)."""
    proxy: str = "env"
    """``env`` (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``), ``none``, or ``http://[user:pass@]host:port``."""
    ca_bundle: str | None = None
    """PEM file of CAs to trust for ``https://`` URLs (default: the system's CAs)."""
    verify_tls: bool = True
    """``false`` turns TLS certificate and hostname checks off (self-signed test servers only)."""
    cache_salt: bool = False
    """Send vLLM's ``cache_salt``, distinct per request, so repeated prompts miss the prefix cache."""
    telemetry_interval_s: float = Field(1.0, ge=0)
    """Scrape the server's Prometheus metrics this often during the run (0 = off); see ``raybench.telemetry``."""
    telemetry_urls: list[str] | None = None
    """Metrics URLs to scrape (``None`` = ``<url>/metrics`` of each of ``urls``)."""

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        if value not in ("env", "none") and not value.startswith("http://"):
            raise ValueError(f"{value!r}: expected env, none or an http://host:port proxy URL")
        return value

    @field_validator("telemetry_urls")
    @classmethod
    def _metrics_urls(cls, value: list[str] | None) -> list[str] | None:
        for url in value or []:
            if not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_for_counts(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and info.data.get("token_count") == "tokenizer":
            raise ValueError("required when token_count is 'tokenizer'")
        return value


class OpenAIEndpointParams(EndpointClientParams):
    """Parameters of :class:`~reference_suts.openai_endpoint.sut.OpenAIEndpointSUT`.

    ``url`` (one string) is accepted for ``urls``. An API key is never a parameter: name the
    environment variable that holds it in ``api_key_env``.
    """

    urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000"], min_length=1)
    """Endpoint base URLs (``http(s)://host:port``, a trailing ``/v1`` is dropped)."""
    model: str | None = None
    """Model name sent with every request (``None`` = the first id of ``GET /v1/models``)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    api_key: None = Field(None, exclude=True, repr=False)
    """Rejected: keys come from the environment (``api_key_env``)."""

    @model_validator(mode="before")
    @classmethod
    def _url_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data and "urls" not in data:
            data = {k: v for k, v in data.items() if k != "url"} | {"urls": [data["url"]]}
        return data

    @field_validator("urls", mode="before")
    @classmethod
    def _one_url(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _http(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key(cls, value: Any) -> None:
        raise ValueError("do not put the key in params; name its env var in api_key_env")
