"""Diffusers ``WanPipeline`` reference SUT for the MLPerf Wan2.2 T2V-A14B text-to-video benchmark.

Params come in two presets, so one switch turns the demo into the real benchmark:

* ``preset="mlperf"`` (default): the MLPerf reference settings
  (``text_to_video/wan-2.2-t2v-a14b/inference_config.yaml`` and ``run_mlperf.py``).
* ``preset="tiny"``: the tiny local pipeline on CPU (what the ``wan22`` workload's demo uses).

Every other param defaults to ``None`` = "the preset's value"; a non-``None`` value overrides
the preset (``params.py``). Nothing heavy is imported here.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.diffusers_wan.params import (
    MLPERF_PRESET,
    PRESETS,
    REFERENCE_NEGATIVE_PROMPT,
    TINY_PRESET,
    DiffusersWanParams,
    resolve_params,
)

__all__ = [
    "MLPERF_PRESET",
    "PRESETS",
    "REFERENCE_NEGATIVE_PROMPT",
    "SUT_SPEC",
    "TINY_PRESET",
    "resolve_params",
]

SUT_SPEC = SUTSpec(
    name="diffusers_wan",
    description="Wan2.2 T2V-A14B on Diffusers (two experts, UniPC, 20 steps, BF16 + FP32 VAE, fixed latent)",
    entry="reference_suts.diffusers_wan.sut:DiffusersWanSUT",
    extra="wan",
    params_model=DiffusersWanParams,  # None = the preset's value (see MLPERF_PRESET / TINY_PRESET)
)
