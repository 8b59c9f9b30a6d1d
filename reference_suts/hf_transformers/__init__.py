"""Hugging Face Transformers reference SUT (in-process, batched ``generate``, streamed steps)."""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.hf_transformers.params import HFTransformersParams

SUT_SPEC = SUTSpec(
    name="hf_transformers",
    description="Any Transformers causal LM or image-text-to-text model, batched generate in-process",
    entry="reference_suts.hf_transformers.sut:HFTransformersSUT",
    extra="vlm",
    params_model=HFTransformersParams,
)
