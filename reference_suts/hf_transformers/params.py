"""Parameters of the hf_transformers SUT (pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from raybench.core.spec import Params

__all__ = ["HFTransformersParams"]


class HFTransformersParams(Params):
    """Parameters of :class:`~reference_suts.hf_transformers.sut.HFTransformersSUT`; ``model`` is required."""

    model: str | None = Field(None, validate_default=True)
    """Local checkpoint directory, a hub id (with ``allow_download``), or a tiny random model built
    locally (``tiny-qwen3``, ``tiny-qwen3-vl``; see tiny.py). Required."""
    model_type: Literal["auto", "causal_lm", "image_text_to_text"] = "auto"
    """``auto``: image-text-to-text if the config is a VLM, else causal LM."""
    revision: str | None = None
    """Hub revision."""
    allow_download: bool = False
    """Let Transformers reach the hub (default off: ``HF_HUB_OFFLINE=1``)."""
    trust_remote_code: bool = False
    """Passed to ``from_pretrained``."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``...; ignored with ``device_map``."""
    device_map: str | None = None
    """e.g. ``auto`` to shard a large model over GPUs."""
    attn_implementation: str | None = None
    """e.g. ``sdpa`` or ``flash_attention_2``."""
    max_batch: int = Field(8, ge=1)
    """Samples per ``generate`` call (also what the harness sends per Offline query)."""
    max_inflight: int = Field(0, ge=0)
    """Cap on concurrent Offline queries (0 = none: the batcher works through the whole query)."""
    batch_wait_ms: float = Field(2.0, ge=0)
    """How long the batcher waits for more samples after the first one."""
    max_new_tokens: int = Field(128, ge=1)
    """Generation limit per sample."""
    do_sample: bool = False
    """Sample (then ``temperature``/``top_p``/``top_k``/``min_p`` apply); greedy otherwise."""
    temperature: float | None = None
    """Sampling temperature."""
    top_p: float | None = None
    """Nucleus sampling."""
    top_k: int | None = None
    """Top-k sampling."""
    min_p: float | None = None
    """Min-p sampling."""
    repetition_penalty: float | None = None
    """Repetition penalty."""
    seed: int = 0
    """Torch seed set at start."""
    num_threads: int | None = Field(None, ge=1)
    """``torch.set_num_threads`` value (``None``: leave as is)."""
    stream: bool = True
    """Report per-step token timestamps to the harness."""
    warmup: bool = True
    """Run a 2-token generation at start."""

    @field_validator("model")
    @classmethod
    def _required(cls, value: str | None) -> str:
        if not value:
            raise ValueError(
                "required (a local checkpoint directory, a hub id with allow_download=true, "
                "or tiny-qwen3 / tiny-qwen3-vl)"
            )
        return value
