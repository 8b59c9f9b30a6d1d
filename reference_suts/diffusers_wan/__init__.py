"""Diffusers ``WanPipeline`` reference SUT for the MLPerf Wan2.2 T2V-A14B text-to-video benchmark.

Defaults are the MLPerf reference settings (``text_to_video/wan-2.2-t2v-a14b/inference_config.yaml``
and ``run_mlperf.py``); merge ``tiny.TINY_PARAMS`` over them for the CPU demo. Nothing heavy is
imported here.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec

__all__ = ["REFERENCE_NEGATIVE_PROMPT", "SUT_SPEC"]

#: ``negative_prompt`` of the reference's inference_config.yaml (a YAML block scalar, stripped).
REFERENCE_NEGATIVE_PROMPT = (
    "vivid colors, overexposed, static, blurry details, subtitles, style,\n"
    "work of art, painting, picture, still, overall grayish, worst quality,\n"
    "low quality, JPEG artifacts, ugly, deformed, extra fingers, poorly drawn hands,\n"
    "poorly drawn face, deformed, disfigured, deformed limbs, fused fingers,\n"
    "static image, cluttered background, three legs, many people in the background,\n"
    "walking backwards"
)

SUT_SPEC = SUTSpec(
    name="diffusers_wan",
    description="Wan2.2 T2V-A14B on Diffusers (two experts, UniPC, 20 steps, BF16 + FP32 VAE, fixed latent)",
    entry="reference_suts.diffusers_wan.sut:DiffusersWanSUT",
    extra="wan",
    params={
        # weights: local directory, Hugging Face hub id, or "builtin:tiny"
        "model": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        "revision": None,  # hub commit; MLPerf used 5be7df9619b54f4e2667b2755bc6a756675b5cd7
        "allow_download": False,  # False = local_files_only (offline), as HF_HUB_OFFLINE=1
        # generation (inference_config.yaml)
        "height": 720,
        "width": 1280,
        "num_frames": 81,
        "fps": 16,
        "num_inference_steps": 20,
        "guidance_scale": 4.0,
        "guidance_scale_2": 3.0,
        "boundary_ratio": 0.875,
        "seed": 42,
        "negative_prompt": REFERENCE_NEGATIVE_PROMPT,
        "max_sequence_length": 512,
        # precision: BF16 pipeline, FP32 VAE
        "dtype": "bfloat16",
        "vae_dtype": "float32",
        # fixed initial latent: None = <workload data_dir>/fixed_latent.pt, else a cache file
        "latent_path": None,
        "generate_latent": False,  # create a missing latent (never for MLPerf results)
        # placement: "auto" = cuda if available else cpu; per-component overrides
        "device": "auto",
        "text_encoder_device": None,
        "transformer_device": None,  # both experts
        "vae_device": None,
        "offload": "none",  # "model" = diffusers enable_model_cpu_offload
        "num_threads": None,  # torch intra-op threads (CPU)
        # outputs
        "video_dir": None,  # None = $RAYBENCH_CACHE/wan22-videos
        "save_videos": "accuracy",  # "accuracy" | "always" | "never"
        "response_format": "mp4",  # "mp4" bytes or "path" (UTF-8 path of the mp4)
        "warmup": False,
    },
)
