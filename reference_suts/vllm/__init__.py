"""Reference SUT ``vllm``: a vLLM OpenAI server per replica (server mode) or vLLM's async engine
in the replica (engine mode). See README.md."""

from __future__ import annotations

from typing import Any

from raybench.core.spec import SUTSpec

__all__ = ["SUT_SPEC", "create_sut"]


def create_sut(params: dict[str, Any]) -> Any:
    """Build the SUT for ``params["mode"]``: ``server`` (default) or ``engine``.

    Raises:
        ValueError: unknown mode.
    """
    p = dict(params)
    mode = p.pop("mode", "server")
    if mode == "server":
        from reference_suts.vllm.server import VllmServerSUT

        return VllmServerSUT(p)
    if mode == "engine":
        from reference_suts.vllm.engine import VllmEngineSUT

        return VllmEngineSUT(p)
    raise ValueError(f"sut.params.mode: expected 'server' or 'engine', got {mode!r}")


SUT_SPEC = SUTSpec(
    name="vllm",
    description="vLLM: an OpenAI server launched per replica (mode=server) or AsyncLLM in the replica (mode=engine)",
    entry="reference_suts.vllm:create_sut",
    extra="vllm",
    params={"mode": "server", "model": None, "max_tokens": 128, "temperature": 0.0},
)
