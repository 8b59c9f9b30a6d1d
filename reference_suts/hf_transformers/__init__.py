"""Hugging Face Transformers reference SUT (in-process, batched ``generate``, streamed steps)."""

from __future__ import annotations

from raybench.core.spec import SUTSpec

SUT_SPEC = SUTSpec(
    name="hf_transformers",
    description="Any Transformers causal LM or image-text-to-text model, batched generate in-process",
    entry="reference_suts.hf_transformers.sut:HFTransformersSUT",
    extra="vlm",
    params={
        "model": None,  # local path, hub id (allow_download), or tiny-qwen3 / tiny-qwen3-vl
        "max_batch": 8,
        "max_inflight": 0,
        "max_new_tokens": 128,
        "do_sample": False,
        "dtype": "auto",
        "device": "auto",
    },
)
