"""Diffusers Wan2.2 text-to-video SUT, following the MLPerf reference (``text_to_video/wan-2.2-t2v-a14b``).

One query = one prompt = one video. Per prompt the reference calls ``WanPipeline`` with the two
A14B experts (``transformer`` for timesteps >= ``boundary_ratio * 1000``, ``transformer_2``
below), UniPC multistep, 20 steps, CFG 4.0 (high-noise expert) / 3.0 (low-noise expert), the
fixed negative prompt, 720x1280, 81 frames, a ``torch.Generator`` seeded 42 and the fixed
initial latent from ``fixed_latent.pt`` (UniPC draws no noise, so the latent alone makes the
output deterministic). Weights are BF16 except the VAE, loaded separately in FP32.

Response: the video encoded as mp4 at 16 fps (what the newer reference logs "to reduce
mlperf_log_accuracy.json size"; raw frames would be ~900 MB per sample), or with
``response_format="path"`` the UTF-8 path of the written mp4, for runs whose accuracy log must
stay small and whose scorer sees the same file system. Videos are also written as
``<video_dir>/<prompt>-0.mp4`` (VBench's name) in accuracy mode.

The denoising runs in a worker thread behind an ``asyncio.Lock``: one video at a time per SUT
(``max_batch = max_inflight = 1``); scale out with more replicas (one per GPU or GPU group).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raybench.core.cache import cache_root
from raybench.core.protocols import Query, Response, SUTContext
from reference_suts.diffusers_wan.params import resolve_params
from workloads.wan22.payload import encode_mp4, to_uint8, video_filename, write_mp4

__all__ = ["DiffusersWanSUT"]

log = logging.getLogger(__name__)


class DiffusersWanSUT:
    """The reference Wan2.2 T2V-A14B SUT on Diffusers.

    Params: ``preset`` (``"mlperf"`` or ``"tiny"``) and overrides of its values, see
    :class:`~reference_suts.diffusers_wan.params.DiffusersWanParams` and the README.

    Example:
        >>> sut = DiffusersWanSUT({"preset": "tiny"})
        >>> asyncio.run(sut.start(SUTContext("wan22", "SingleStream", "AccuracyOnly")))
        >>> [r] = asyncio.run(sut.issue(Query(id=0, indices=[0], samples=["a cat"])))
    """

    name = "diffusers_wan"
    max_batch = 1
    max_inflight = 1

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params: dict[str, Any] = resolve_params(params)
        self.pipe: Any = None
        self.latent: Any = None
        self.latent_path: Path | None = None
        self.video_dir: Path | None = None
        self._save = False
        self._device: Any = None
        self._lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: SUTContext) -> None:
        """Load the pipeline and the fixed latent (in a thread), decide where videos go."""
        self._lock = asyncio.Lock()
        save = self.params["save_videos"]
        self._save = save == "always" or (save == "accuracy" and ctx.mode == "AccuracyOnly")
        if self._save or self.params["response_format"] == "path":
            raw = self.params.get("video_dir")
            self.video_dir = Path(str(raw)).expanduser() if raw else cache_root() / "wan22-videos"
            self.video_dir.mkdir(parents=True, exist_ok=True)
            self._save = True
        await asyncio.to_thread(self._load, dict(ctx.workload_params))
        if self.params.get("warmup"):
            await asyncio.to_thread(self.generate, "warm-up")

    async def stop(self) -> None:
        self.pipe = None
        self.latent = None

    async def issue(self, query: Query) -> Sequence[Response]:
        """Generate one video per sample (the prompt string), in order."""
        if self._lock is None:
            raise RuntimeError("DiffusersWanSUT.issue called before start()")
        out: list[Response] = []
        for prompt in query.samples:
            async with self._lock:
                try:
                    out.append(Response(data=await asyncio.to_thread(self._run_one, prompt)))
                except Exception as exc:  # a failed sample is an error record, not a crashed run
                    log.exception("Wan2.2 generation failed for prompt %r", prompt)
                    out.append(Response(error=f"{type(exc).__name__}: {exc}"))
        return out

    # ------------------------------------------------------------------ loading

    def _load(self, workload_params: dict[str, Any]) -> None:
        import torch

        p = self.params
        if p.get("num_threads"):
            torch.set_num_threads(int(p["num_threads"]))
        self.pipe = self._load_pipeline()
        self.latent_path = self._latent_path(workload_params)
        self.latent = self._load_latent(self.latent_path).to(self._device)

    def _load_pipeline(self) -> Any:
        import diffusers
        import torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

        p = self.params
        model = str(p["model"])
        from reference_suts.diffusers_wan.tiny import TINY_MODEL, ensure_tiny_pipeline

        if model == TINY_MODEL:
            model = str(ensure_tiny_pipeline())
        local = os.path.isdir(os.path.expanduser(model))
        if local:
            model = os.path.expanduser(model)
        elif not p.get("allow_download") and not _in_hf_cache(model, p.get("revision")):
            raise FileNotFoundError(
                f"diffusers_wan model {model!r} is neither a directory nor in the Hugging Face cache; "
                "download it first or set allow_download=true"
            )
        # diffusers >= 0.42 renamed torch_dtype to dtype (the old name warns).
        dkey = "dtype" if hasattr(diffusers.utils, "_resolve_dtype") else "torch_dtype"
        common: dict[str, Any] = {"local_files_only": not p.get("allow_download")}
        if p.get("revision") and not local:
            common["revision"] = p["revision"]
        vae = AutoencoderKLWan.from_pretrained(
            model, subfolder="vae", **{dkey: getattr(torch, p["vae_dtype"])}, **common
        )
        pipe = WanPipeline.from_pretrained(
            model,
            vae=vae,
            boundary_ratio=float(p["boundary_ratio"]),
            **{dkey: getattr(torch, p["dtype"])},
            **common,
        )
        if pipe.transformer_2 is None:
            raise ValueError(
                f"diffusers_wan model {model!r} has no transformer_2: not a Wan2.2 A14B two-expert pipeline"
            )
        if not isinstance(pipe.scheduler, UniPCMultistepScheduler):
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self._place(pipe)
        return pipe

    def _place(self, pipe: Any) -> None:
        """Put text encoder, experts and VAE on their devices (or enable model CPU offload).

        The pipeline creates latents and embeddings on its "execution device", which diffusers
        infers from the components and may pick the text encoder's or VAE's GPU when they sit on
        another device than the experts; it is pinned to the experts' device in that case.
        """
        import torch

        p = self.params
        device = p.get("device") or "auto"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"

        def resolve(name: str) -> Any:
            dev = torch.device(p.get(name) or device)
            if dev.type == "cuda" and dev.index is None:  # "cuda" means the current GPU, as modules report it
                dev = torch.device("cuda", torch.cuda.current_device())
            return dev

        te, tr, va = (resolve(k) for k in ("text_encoder_device", "transformer_device", "vae_device"))
        if p["offload"] == "model":
            pipe.enable_model_cpu_offload(device=tr)
            self._device = tr
            return
        pipe.text_encoder.to(te)
        pipe.transformer.to(tr)
        pipe.transformer_2.to(tr)
        pipe.vae.to(va)
        if pipe._execution_device != tr:
            cls = type(pipe)
            pipe.__class__ = type(cls.__name__, (cls,), {"_execution_device": property(lambda _self: tr)})
        self._device = tr

    def expected_latent_shape(self) -> tuple[int, ...]:
        """``(1, C, (F-1)//4 + 1, H//8, W//8)`` for the configured video (C = experts' in_channels)."""
        p, pipe = self.params, self.pipe
        return (
            1,
            int(pipe.transformer.config.in_channels),
            (p["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1,
            p["height"] // pipe.vae_scale_factor_spatial,
            p["width"] // pipe.vae_scale_factor_spatial,
        )

    def _latent_path(self, workload_params: Mapping[str, Any]) -> Path:
        """``latent_path`` param, else ``<workload data_dir>/fixed_latent.pt``, else a cache file per shape+seed."""
        if self.params.get("latent_path"):
            return Path(str(self.params["latent_path"])).expanduser()
        if workload_params.get("data_dir"):
            return Path(str(workload_params["data_dir"])).expanduser() / "fixed_latent.pt"
        shape = "x".join(str(s) for s in self.expected_latent_shape())
        return cache_root() / "wan22-latents" / f"fixed_latent_{shape}_seed{self.params['seed']}.pt"

    def _load_latent(self, path: Path) -> Any:
        """Load the fixed latent, or create it (``randn`` from ``seed``, float32) when allowed.

        Raises:
            FileNotFoundError: missing and ``generate_latent`` is false.
            ValueError: not a tensor of the expected shape.
        """
        import torch

        shape = self.expected_latent_shape()
        if not path.is_file():
            if not self.params.get("generate_latent"):
                raise FileNotFoundError(
                    f"fixed latent not found: {path} (MLPerf's fixed_latent.pt ships with the dataset; "
                    "generate_latent=true makes a new one, not valid for MLPerf results)"
                )
            gen = torch.Generator(device="cpu").manual_seed(int(self.params["seed"]))
            latent = torch.randn(shape, generator=gen, dtype=torch.float32)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            torch.save(latent, tmp)
            os.replace(tmp, path)
            log.info("generated fixed latent %s with shape %s", path, shape)
        latent = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(latent, torch.Tensor) or tuple(latent.shape) != shape:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(f"fixed latent {path} has shape {got}, expected {shape} for this video size")
        return latent

    # ------------------------------------------------------------------ generation

    def generate(self, prompt: str) -> Any:
        """Run the pipeline for one prompt; returns ``uint8`` RGB frames ``(T, H, W, 3)``."""
        import torch

        p = self.params
        result = self.pipe(
            prompt=prompt,
            negative_prompt=p["negative_prompt"],
            height=p["height"],
            width=p["width"],
            num_frames=p["num_frames"],
            guidance_scale=float(p["guidance_scale"]),
            guidance_scale_2=float(p["guidance_scale_2"]),
            num_inference_steps=p["num_inference_steps"],
            generator=torch.Generator(device=self._device).manual_seed(int(p["seed"])),
            latents=self.latent,
            max_sequence_length=p["max_sequence_length"],
            output_type="np",
        )
        return to_uint8(result.frames[0])

    def _run_one(self, prompt: Any) -> bytes:
        if not isinstance(prompt, str):
            raise TypeError(f"Wan2.2 sample must be a prompt string, got {type(prompt).__name__}")
        frames = self.generate(prompt)
        fps = self.params["fps"]
        if not self._save:
            return encode_mp4(frames, fps)
        assert self.video_dir is not None
        path = write_mp4(frames, self.video_dir / video_filename(prompt), fps)
        if self.params["response_format"] == "path":
            return str(path.resolve()).encode("utf-8")
        return path.read_bytes()


def _in_hf_cache(repo_id: str, revision: str | None) -> bool:
    """Whether a hub id's ``model_index.json`` is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with diffusers
        return False
    try:
        found = try_to_load_from_cache(repo_id, "model_index.json", revision=revision)
    except Exception:  # an invalid repo id
        return False
    return isinstance(found, str)
