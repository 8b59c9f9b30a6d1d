"""Parameters of the diffusers_wan SUT: two presets and per-param overrides (pydantic only).

Every param but ``preset`` defaults to ``None`` = "the preset's value"; a non-``None`` value
overrides the preset. :func:`resolve_params` returns the effective values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from raybench.core.spec import Params, validate_params

__all__ = [
    "MLPERF_PRESET",
    "PRESETS",
    "REFERENCE_NEGATIVE_PROMPT",
    "TINY_PRESET",
    "DiffusersWanParams",
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

#: The tiny local pipeline on CPU: 9 frames of 32x32 at 16 fps (the ``wan22`` demo video).
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


_Dtype = Literal["bfloat16", "float16", "float32"]


class DiffusersWanParams(Params):
    """Parameters of :class:`~reference_suts.diffusers_wan.sut.DiffusersWanSUT` (``None`` = the preset's).

    Values are checked one by one here (types, choices, ``height``/``width`` multiples of 16,
    ``num_frames`` = 4k+1); the presets' own values are valid by construction.
    """

    preset: Literal["mlperf", "tiny"] = "mlperf"
    """``mlperf``: the MLPerf reference settings; ``tiny``: the tiny local pipeline on CPU."""
    model: str | None = Field(None, min_length=1)
    """Weights: a local directory, a Hugging Face hub id, or ``builtin:tiny``."""
    revision: str | None = None
    """Hub commit (MLPerf used 5be7df9619b54f4e2667b2755bc6a756675b5cd7)."""
    allow_download: bool | None = None
    """``False`` = ``local_files_only``, the effect of ``HF_HUB_OFFLINE=1``."""
    height: PositiveInt | None = None
    """Video height in pixels (a multiple of 16)."""
    width: PositiveInt | None = None
    """Video width in pixels (a multiple of 16)."""
    num_frames: PositiveInt | None = None
    """Frames per video, 4k+1 (Wan's VAE groups 4 frames)."""
    fps: PositiveInt | None = None
    """Frames per second of the mp4."""
    num_inference_steps: PositiveInt | None = None
    """UniPC steps."""
    guidance_scale: float | None = None
    """CFG scale of the high-noise expert."""
    guidance_scale_2: float | None = None
    """CFG scale of the low-noise expert."""
    boundary_ratio: float | None = Field(None, gt=0, lt=1)
    """Timesteps >= ``boundary_ratio * 1000`` go to the high-noise expert."""
    seed: int | None = None
    """Seed of the ``torch.Generator`` (and of a generated latent)."""
    negative_prompt: str | None = None
    """Negative prompt (the reference's text)."""
    max_sequence_length: PositiveInt | None = None
    """T5 token length."""
    dtype: _Dtype | None = None
    """Pipeline dtype."""
    vae_dtype: _Dtype | None = None
    """VAE dtype."""
    latent_path: str | None = None
    """Fixed initial latent (``None`` = ``<workload data_dir>/fixed_latent.pt``, else a cache file)."""
    generate_latent: bool | None = None
    """Create a missing latent (never valid for MLPerf results)."""
    device: str | None = None
    """``auto`` = cuda if available, else cpu."""
    text_encoder_device: str | None = None
    """Per-component placement (``None`` = ``device``)."""
    transformer_device: str | None = None
    """Device of both experts (``None`` = ``device``)."""
    vae_device: str | None = None
    """Per-component placement (``None`` = ``device``)."""
    offload: Literal["none", "model"] | None = None
    """``model`` = Diffusers ``enable_model_cpu_offload``."""
    num_threads: PositiveInt | None = None
    """``torch.set_num_threads`` (process-wide)."""
    video_dir: str | None = None
    """Where videos are written (``None`` = ``$RAYBENCH_CACHE/wan22-videos``)."""
    save_videos: Literal["accuracy", "always", "never"] | None = None
    """When videos are written to ``video_dir``."""
    response_format: Literal["mp4", "path"] | None = None
    """Response bytes: the mp4, or the UTF-8 path of the written mp4."""
    warmup: bool | None = None
    """Generate one video in ``start()``."""

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, value: int | None) -> int | None:
        if value is not None and value % 16:
            raise ValueError(f"must be a multiple of 16, got {value}")
        return value

    @field_validator("num_frames")
    @classmethod
    def _four_k_plus_one(cls, value: int | None) -> int | None:
        if value is not None and (value - 1) % 4:
            raise ValueError(f"must be 4k+1 (Wan's VAE groups 4 frames), got {value}")
        return value


assert set(DiffusersWanParams.model_fields) == {"preset", *MLPERF_PRESET}


def resolve_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``PRESETS[params["preset"]]`` overlaid with every non-``None`` param.

    Raises:
        ParamsError: an unknown preset or param name, or a bad value (one line naming it).
    """
    p = validate_params(DiffusersWanParams, params, "sut.params")
    return {"preset": p["preset"], **PRESETS[p["preset"]], **{k: v for k, v in p.items() if v is not None}}
