"""A tiny random-weight Wan2.2 pipeline, built locally so the SUT runs on a CPU with no model hub.

It has the real A14B structure (UMT5 text encoder, two ``WanTransformer3DModel`` experts split
at ``boundary_ratio``, the Wan VAE, UniPC with flow sigmas) at toy sizes: ~100 k parameters
(28 k per expert), one 9-frame 32x32 video with 4 steps and CFG takes ~0.1 s. The pipeline is saved with
``save_pretrained`` into ``$RAYBENCH_CACHE/wan22-tiny-pipeline-v1`` (built once, into a temp
dir renamed into place so concurrent builders don't race) and then loaded back with
``WanPipeline.from_pretrained`` exactly like real weights, so the real loading code is the code
under test. Reloading needs ``accelerate`` (diffusers refuses ``low_cpu_mem_usage=False`` for
models that keep fp32 modules).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raybench.core.cache import build_once

__all__ = ["TINY_MODEL", "build_tiny_pipeline", "ensure_tiny_pipeline"]

#: Value of the SUT's ``model`` param that selects this pipeline (``preset="tiny"`` sets it, with
#: the sizes the toy model is meant for; see ``TINY_PRESET`` in ``params.py``).
TINY_MODEL = "builtin:tiny"

_VERSION = "v1"
_CORPUS = (
    "a person swimming in ocean",
    "a cat playing in park",
    "a car turning a corner",
    "a horse galloping across an open field",
    "An astronaut flying in space, oil painting",
    "The bund Shanghai, pixel art",
    "lighthouse waterfall blurry static low quality",
)


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_tiny_pipeline(seed: int = 0) -> Any:
    """Build the tiny ``WanPipeline`` in memory (weights drawn from ``seed``, global RNG untouched)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tok = _tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=len(tok),
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                pad_token_id=tok.pad_token_id,
            )
        )

        def expert() -> Any:
            return WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=2,
                attention_head_dim=12,
                in_channels=16,
                out_channels=16,
                text_dim=32,
                freq_dim=256,
                ffn_dim=32,
                num_layers=2,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
                rope_max_seq_len=32,
            )

        transformer, transformer_2 = expert(), expert()
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return WanPipeline(
        tokenizer=tok,
        text_encoder=text_encoder,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=0.875,
        vae=vae,
        scheduler=scheduler,
    )


def ensure_tiny_pipeline(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory of the saved tiny pipeline, building it on first use.

    Args:
        cache_dir: parent directory (default :func:`raybench.core.cache.cache_root`).
    """
    return build_once(f"wan22-tiny-pipeline-{_VERSION}", lambda d: build_tiny_pipeline().save_pretrained(d),
                      "model_index.json", cache_dir)
