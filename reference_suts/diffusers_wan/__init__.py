"""Diffusers ``WanPipeline`` reference SUT for the MLPerf Wan2.2 T2V-A14B text-to-video benchmark.

Params come in two presets, so one switch turns the demo into the real benchmark:

* ``preset="mlperf"`` (default): the MLPerf reference settings
  (``text_to_video/wan-2.2-t2v-a14b/inference_config.yaml`` and ``run_mlperf.py``).
* ``preset="tiny"``: the tiny local pipeline on CPU (what the ``wan22`` workload's demo uses).

Every other param defaults to ``None`` = "the preset's value"; a non-``None`` value overrides
the preset. Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raybench.core.spec import SUTSpec

__all__ = [
    "MLPERF_PRESET",
    "PRESETS",
    "REFERENCE_NEGATIVE_PROMPT",
    "SUT_SPEC",
    "TINY_PRESET",
    "resolve_params",
]

#: ``negative_prompt`` of the reference's inference_config.yaml (a YAML block scalar, stripped).
REFERENCE_NEGATIVE_PROMPT = (
    "vivid colors, overexposed, static, blurry details, subtitles, style,\n"
    "work of art, painting, picture, still, overall grayish, worst quality,\n"
    "low quality, JPEG artifacts, ugly, deformed, extra fingers, poorly drawn hands,\n"
    "poorly drawn face, deformed, disfigured, deformed limbs, fused fingers,\n"
    "static image, cluttered background, three legs, many people in the background,\n"
    "walking backwards"
)

#: The MLPerf reference settings.
MLPERF_PRESET: dict[str, Any] = {
    # weights: local directory, Hugging Face hub id, or "builtin:tiny"
    "model": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    "revision": None,  # hub commit; MLPerf used 5be7df9619b54f4e2667b2755bc6a756675b5cd7
    "allow_download": False,  # False = local_files_only, the effect of HF_HUB_OFFLINE=1
    # generation (inference_config.yaml)
    "height": 720,
    "width": 1280,
    "num_frames": 81,
    "fps": 16,
    "num_inference_steps": 20,
    "guidance_scale": 4.0,  # high-noise expert
    "guidance_scale_2": 3.0,  # low-noise expert
    "boundary_ratio": 0.875,
    "seed": 42,
    "negative_prompt": REFERENCE_NEGATIVE_PROMPT,
    "max_sequence_length": 512,  # WanPipeline's default; the reference does not set it
    # precision: BF16 pipeline, FP32 VAE
    "dtype": "bfloat16",
    "vae_dtype": "float32",
    # fixed initial latent: None = <workload data_dir>/fixed_latent.pt, else a cache file
    "latent_path": None,
    "generate_latent": False,  # create a missing latent (never valid for MLPerf results)
    # placement: "auto" = cuda if available else cpu; per-component overrides
    "device": "auto",
    "text_encoder_device": None,
    "transformer_device": None,  # both experts
    "vae_device": None,
    "offload": "none",  # "model" = diffusers enable_model_cpu_offload
    "num_threads": None,  # torch intra-op threads
    # outputs
    "video_dir": None,  # None = $RAYBENCH_CACHE/wan22-videos
    "save_videos": "accuracy",  # "accuracy" | "always" | "never"
    "response_format": "mp4",  # "mp4" bytes or "path" (UTF-8 path of the mp4)
    "warmup": False,
}

#: The tiny local pipeline on CPU: 9 frames of 32x32 at 16 fps (``workloads.wan22.video.DEMO_VIDEO``).
#: 4 UniPC steps with flow_shift 3 give timesteps [999, 900, 750, 500]: two above the boundary
#: 0.875 * 1000 (high-noise expert), two below (low-noise expert). One torch thread: the toy
#: model has nothing to parallelise, and on a busy 2-core machine two OpenMP threads made a
#: 0.04 s video take up to 0.8 s.
TINY_PRESET: dict[str, Any] = {
    **MLPERF_PRESET,
    "model": "builtin:tiny",
    "height": 32,
    "width": 32,
    "num_frames": 9,
    "num_inference_steps": 4,
    "max_sequence_length": 16,
    "device": "cpu",
    "num_threads": 1,
    "generate_latent": True,
}

PRESETS: dict[str, dict[str, Any]] = {"mlperf": MLPERF_PRESET, "tiny": TINY_PRESET}


def resolve_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``PRESETS[params["preset"]]`` overlaid with every non-``None`` param.

    Raises:
        ValueError: unknown preset or unknown param name.
    """
    preset = params.get("preset") or "mlperf"
    if preset not in PRESETS:
        raise ValueError(f"diffusers_wan param preset must be one of {tuple(PRESETS)}, got {preset!r}")
    unknown = sorted(set(params) - set(MLPERF_PRESET) - {"preset"})
    if unknown:
        raise ValueError(f"diffusers_wan: unknown params {unknown}")
    return {"preset": preset, **PRESETS[preset], **{k: v for k, v in params.items() if v is not None}}


SUT_SPEC = SUTSpec(
    name="diffusers_wan",
    description="Wan2.2 T2V-A14B on Diffusers (two experts, UniPC, 20 steps, BF16 + FP32 VAE, fixed latent)",
    entry="reference_suts.diffusers_wan.sut:DiffusersWanSUT",
    extra="wan",
    # None = the preset's value (see MLPERF_PRESET / TINY_PRESET)
    params={"preset": "mlperf", **dict.fromkeys(MLPERF_PRESET)},
)
