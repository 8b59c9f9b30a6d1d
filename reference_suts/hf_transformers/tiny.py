"""Tiny random Qwen3 / Qwen3-VL checkpoints built locally, so the HF SUT runs with no model hub.

The models are random (their outputs are noise) but they have the real architectures, the
real processor and a real chat template, so every code path of the SUT — chat templating,
image preprocessing, batched generation, streaming, decoding — runs for real on a laptop CPU
in well under a second. Recipe: ``machine_facts.md`` section 4 (Transformers 5.x).

Built checkpoints are cached under ``$RAYBENCH_CACHE/hf-tiny-<name>-v<VERSION>`` (default
``~/.cache/raybench``); a build goes to a temporary directory that is renamed into place, so
concurrent builders (several Ray replicas) never see a half-written directory.

Example:
    >>> path = ensure_tiny_model("tiny-qwen3-vl")   # doctest: +SKIP
    >>> AutoModelForImageTextToText.from_pretrained(path)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from raybench.core.cache import build_once

__all__ = ["TINY_MODELS", "build_tiny_qwen3", "build_tiny_qwen3_vl", "build_tokenizer", "ensure_tiny_model"]

VERSION = 3
"""Bump when the recipe changes, so stale cached checkpoints are not reused."""

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# A minimal ChatML template (the Qwen format): string or list content; image items become the
# vision placeholder the Qwen3-VL processor expands to one token per merged image patch.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- elif item['type'] in ('image', 'image_url') -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS_WORDS = (
    "the a of and to in for with on by is are product category brand title description image "
    "clothing accessories shirts shoes home garden kitchen sporting goods outdoor cycling "
    "electronics audio cameras optics toys games pet supplies health beauty office vehicles parts "
    "new used second hand true false category brand is_secondhand json object schema response "
    "please analyze choose one most appropriate possible categories following string boolean "
    "red blue green black white large small cotton steel wooden leather premium classic "
)


def _corpus() -> list[str]:
    """Deterministic training text: words, JSON answers and digits, so BPE learns useful merges."""
    words = _CORPUS_WORDS.split()
    lines = []
    for i in range(300):
        a, b, c = words[i % len(words)], words[(i * 7) % len(words)], words[(i * 13) % len(words)]
        lines.append(f"{a.title()} {b} {c} > {b.title()} > {c} {i}")
        lines.append(
            f'{{"category": "{a.title()} > {b.title()}", "brand": "{c}", "is_secondhand": {str(i % 2 == 0).lower()}}}'
        )
    lines.append("0123456789 .,:;!?'\"()[]{}<>-_/\\|@#$%^&*+=~`")
    return lines


def build_tokenizer(out_dir: str | Path | None = None) -> Any:
    """Train a 1,000-token byte-level BPE with the Qwen special tokens (0.01 s) and wrap it.

    Args:
        out_dir: when given, ``save_pretrained`` there.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``eos = <|im_end|>``, ``pad = <|endoftext|>``, left
        padding (decoder-only batched generation) and the ChatML template above.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def _text_dims(tok: Any) -> dict[str, Any]:
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        initializer_range=0.2,  # the default 0.02 makes a random model emit one token forever
    )


def build_tiny_qwen3(out_dir: str | Path) -> Path:
    """Save a random ~96 k-parameter ``Qwen3ForCausalLM`` plus its tokenizer into ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(out)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = Qwen3Config(**_text_dims(tok), tie_word_embeddings=True, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    model.save_pretrained(str(out))
    return out


def build_tiny_qwen3_vl(out_dir: str | Path) -> Path:
    """Save a random ~261 k-parameter ``Qwen3VLForConditionalGeneration`` plus processor.

    Vision tower: patch 16, temporal patch 2, spatial merge 2 (so one output token per 32x32
    pixels), DeepStack taps on both vision layers; text tower as :func:`build_tiny_qwen3` with
    interleaved M-RoPE (``mrope_section`` sums to ``head_dim / 2``). The image processor caps
    inputs at 128x128 pixels (``max_pixels``), so a demo image costs at most 16 image tokens.
    """
    import torch
    import transformers
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = _text_dims(tok)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5e5,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    }
    cfg = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(cfg)
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    model.save_pretrained(str(out))
    image_proc = transformers.Qwen2VLImageProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=32 * 32, max_pixels=128 * 128
    )
    video_proc = transformers.Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2)
    proc = transformers.Qwen3VLProcessor(
        image_processor=image_proc, tokenizer=tok, video_processor=video_proc, chat_template=CHAT_TEMPLATE
    )
    proc.save_pretrained(str(out))
    return out


TINY_MODELS: dict[str, Callable[[str | Path], Path]] = {
    "tiny-qwen3": build_tiny_qwen3,
    "tiny-qwen3-vl": build_tiny_qwen3_vl,
}
"""Names the HF SUT accepts in place of a model path."""


def ensure_tiny_model(name: str, root: str | Path | None = None) -> Path:
    """Return the directory of tiny model ``name``, building it on first use.

    Args:
        name: a key of :data:`TINY_MODELS`.
        root: cache root; default ``$RAYBENCH_CACHE`` or ``~/.cache/raybench``.

    Raises:
        ValueError: unknown name.
    """
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_MODELS)}")
    return build_once(f"hf-{name}-v{VERSION}", TINY_MODELS[name], "config.json", root)
