"""Reference SUT ``vllm``: a vLLM OpenAI server per replica (server mode), vLLM servers already
running (external mode) or vLLM's async engine in the replica (engine mode). See README.md."""

from __future__ import annotations

from typing import Any

from raybench.core.spec import SUTSpec, validate_params
from reference_suts.vllm.params import VllmParams

__all__ = ["SUT_SPEC", "create_sut"]


def create_sut(params: dict[str, Any]) -> Any:
    """Build the SUT for ``params["mode"]``: ``server`` (default), ``external`` or ``engine``.

    Raises:
        ParamsError: an unknown mode or a parameter that mode does not take (one line).
    """
    p = validate_params(VllmParams, params, "sut.params")
    if p["mode"] == "server":
        from reference_suts.vllm.server import VllmServerSUT

        return VllmServerSUT(p)
    if p["mode"] == "external":
        from reference_suts.vllm.server import VllmExternalSUT

        return VllmExternalSUT(p)
    from reference_suts.vllm.engine import VllmEngineSUT

    return VllmEngineSUT(p)


SUT_SPEC = SUTSpec(
    name="vllm",
    description="vLLM: an OpenAI server launched per replica (mode=server), running servers at urls "
    "(mode=external) or AsyncLLM in the replica (mode=engine)",
    entry="reference_suts.vllm:create_sut",
    extra="vllm",
    params_model=VllmParams,
)
