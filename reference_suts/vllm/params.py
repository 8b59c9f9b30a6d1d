"""Parameters of the vllm SUT: one model per mode, chosen by ``mode`` (pydantic only).

``mode: server`` (default) launches a vLLM OpenAI server per SUT instance and talks to it with the
``openai_endpoint`` HTTP client, so its parameters are the server's plus the client's; ``mode:
external`` talks to vLLM servers that are already running (``urls``), with the same client;
``mode: engine`` runs vLLM's ``AsyncLLM`` in the SUT and takes engine and sampling parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, RootModel, Tag, field_validator

from raybench.core.spec import Params
from reference_suts.openai_endpoint.params import EndpointClientParams, OpenAIEndpointParams

__all__ = ["ServerArgs", "VllmEngineParams", "VllmExternalParams", "VllmParams", "VllmServerParams"]


def _required_model(value: str | None) -> str:
    if not value:
        raise ValueError("required (a local checkpoint path or a hub id)")
    return value


class ServerArgs(Params):
    """The vLLM server process (:class:`~reference_suts.vllm.server.VllmServer`)."""

    model: str | None = Field(None, validate_default=True)
    """Local path or hub id (required)."""
    served_model_name: str | None = None
    """Name clients send (``None`` = the model string)."""
    python: str | None = None
    """Interpreter that has vLLM, e.g. ``.venv-vllm/bin/python`` (``None`` = this one)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs per server."""
    max_model_len: int | None = Field(None, ge=1)
    """``--max-model-len``."""
    dtype: str | None = "auto"
    """``--dtype`` (``None`` = not passed)."""
    enforce_eager: bool = False
    """``--enforce-eager``."""
    enable_prefix_caching: bool | None = None
    """``None`` = vLLM's default; ``false`` adds ``--no-enable-prefix-caching`` (MLPerf q3vl)."""
    max_num_seqs: int | None = Field(None, ge=1)
    """``--max-num-seqs``."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """``--gpu-memory-utilization``."""
    extra_args: list[str | int | float] = Field(default_factory=list)
    """Appended verbatim to the command line."""
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Extra environment variables of the server process."""
    host: str = "127.0.0.1"
    """Address the server listens on."""
    port: int = Field(0, ge=0, le=65535)
    """0 = a free port chosen at start."""
    startup_timeout_s: float = Field(900.0, gt=0)
    """How long to wait for ``GET /health``."""
    stop_grace_s: float = Field(15.0, ge=0)
    """SIGTERM, then SIGKILL after this long."""
    log_dir: str | None = None
    """Server stdout/stderr go to ``<log_dir>/vllm-<port>.log`` (default: a temporary directory)."""

    _model = field_validator("model")(_required_model)


class VllmServerParams(ServerArgs, EndpointClientParams):
    """``mode: server``: :class:`ServerArgs` plus the HTTP client's parameters (``api``,
    ``max_tokens``, ``temperature``, ``extra_body``, ``response_format``, ...). ``urls``, the
    client's ``model`` and ``api_key_env`` are set by the SUT from the server it launched."""

    mode: Literal["server"] = "server"
    """Launch a vLLM server per SUT instance."""
    urls: None = Field(None, exclude=True, repr=False)
    """Rejected: set from the launched server."""
    url: None = Field(None, exclude=True, repr=False)
    """Rejected: set from the launched server."""
    api_key_env: None = Field(None, exclude=True, repr=False)
    """Rejected: the launched server needs no key."""

    @field_validator("urls", "url", "api_key_env", mode="before")
    @classmethod
    def _owned(cls, value: Any) -> None:
        raise ValueError(
            "set by the vllm SUT itself (it talks to the server it launched); for running servers use mode: external"
        )


class VllmExternalParams(OpenAIEndpointParams):
    """``mode: external``: vLLM servers started outside the run (``vllm serve ...`` on each GPU
    node, or :class:`~reference_suts.vllm.server.VllmServer`), reached at ``urls`` with the
    ``openai_endpoint`` client; every client key (``model``, ``api_key_env``, ``max_tokens``, ...)
    applies. Right for sweeps, where a server owned by the SUT would restart at every point."""

    mode: Literal["external"] = "external"
    """Talk to running servers at ``urls``."""


class VllmEngineParams(Params):
    """``mode: engine``: vLLM's ``AsyncLLM`` in the SUT (``reference_suts.vllm.engine.VllmEngineSUT``)."""

    mode: Literal["engine"] = "engine"
    """Run the engine in the SUT."""
    model: str | None = Field(None, validate_default=True)
    """Local path or hub id (required)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs per engine."""
    max_model_len: int | None = Field(None, ge=1)
    """Engine ``max_model_len``."""
    dtype: str | None = "auto"
    """Engine dtype (``None`` = vLLM's default)."""
    enforce_eager: bool = False
    """No CUDA graphs."""
    enable_prefix_caching: bool | None = None
    """``None`` = vLLM's default (MLPerf q3vl requires false)."""
    max_num_seqs: int | None = Field(None, ge=1)
    """Engine ``max_num_seqs``."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """Engine ``gpu_memory_utilization``."""
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Any other ``AsyncEngineArgs`` field."""
    api: Literal["completions", "chat"] = "completions"
    """``chat`` renders chat messages with the tokenizer's template."""
    max_tokens: int | None = Field(128, ge=1)
    """Output-token limit per sample (a payload's ``max_tokens`` wins; ``None`` = up to
    ``max_model_len`` minus the prompt, as a vLLM server does when a request sends none)."""
    min_tokens: int = Field(1, ge=0)
    """Minimum output tokens."""
    temperature: float | None = Field(0.0, ge=0)
    """0 = greedy; ``None`` = the model's ``generation_config`` default (vLLM's own default
    when the model has none)."""
    ignore_eos: bool = False
    """Generate ``max_tokens`` whatever the model says."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    """Any other ``SamplingParams`` field."""
    response_format: Literal["text", "token_ids"] = "text"
    """Response bytes: UTF-8 text or int32 token ids (as MLPerf LLM accuracy logs)."""
    max_inflight: int = Field(1024, ge=1)
    """Requests in flight at once."""
    max_batch: int = Field(1, ge=1)
    """Samples per Offline call (each still one request)."""

    _model = field_validator("model")(_required_model)


def mode(value: Any) -> str:
    """The union's tag: the ``mode`` key, ``server`` when absent (named like the field it reads,
    so that errors say ``sut.params.mode``)."""
    got = value.get("mode") if isinstance(value, dict) else getattr(value, "mode", None)
    return got or "server"


_ByMode = Annotated[
    Annotated[VllmServerParams, Tag("server")]
    | Annotated[VllmExternalParams, Tag("external")]
    | Annotated[VllmEngineParams, Tag("engine")],
    Discriminator(mode),
]


class VllmParams(RootModel[_ByMode]):
    """Parameters of the vllm SUT: :class:`VllmServerParams`, :class:`VllmExternalParams` or
    :class:`VllmEngineParams` by ``mode``."""

    root: _ByMode = Field(default_factory=lambda: VllmServerParams.model_construct())
    """The parameters of the chosen mode (defaults: server mode)."""
