"""Parameters of the llm workload: the CNN/DailyMail reference set, or another source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raybench.core.spec import Params

__all__ = ["HFParams", "LLMParams", "Length", "ShareGPTParams", "SharedPrefixParams", "SyntheticParams", "TraceParams"]


class Length(Params):
    """A token-length distribution (see :mod:`workloads.llm.synthetic` for the exact rules)."""

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    """``fixed`` (= round(mean)), ``uniform`` on [min, max], ``normal`` or ``lognormal`` (mean, std)."""
    mean: float = Field(128.0, gt=0)
    """Mean length in tokens."""
    std: float = Field(0.0, ge=0)
    """Standard deviation (normal, lognormal)."""
    min: int = Field(1, ge=1)
    """Lower clip (uniform: lower bound)."""
    max: int | None = Field(None, ge=1)
    """Upper clip (uniform: upper bound, required)."""

    @model_validator(mode="after")
    def _bounds(self) -> Length:
        if self.dist == "uniform" and self.max is None:
            raise ValueError("max: required for a uniform distribution")
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min: {self.min} > max {self.max}")
        return self


class ShareGPTParams(Params):
    """``source: sharegpt`` (ShareGPT JSON array or JSONL at ``path``)."""

    turns: Literal["first", "all"] = "first"
    """``first``: the first user turn; ``all``: the whole conversation up to its last answer (chat messages)."""
    output_len: Literal["reference", "max_tokens"] = "reference"
    """Output limit per sample: the reference answer's token count (as vLLM bench) or ``max_tokens``."""


class SyntheticParams(Params):
    """``source: synthetic``: random prompts of exact token lengths."""

    num_prompts: int = Field(100, ge=1)
    """Samples in the library."""
    input_len: Length = Length(mean=512)
    """Prompt length in tokens."""
    output_len: Length = Length(mean=128)
    """Output limit (``max_tokens``) per sample."""
    seed: int = Field(0, ge=0)
    """Seed of the lengths and tokens."""


class SharedPrefixParams(Params):
    """``source: shared_prefix``: groups of prompts sharing a prefix (prefix-cache studies)."""

    num_groups: int = Field(4, ge=1)
    """Number of distinct prefixes."""
    prompts_per_group: int = Field(8, ge=1)
    """Prompts per prefix (the library holds num_groups x prompts_per_group samples, group-major)."""
    prefix_len: int = Field(256, ge=0)
    """Shared prefix length P in tokens."""
    suffix_len: Length = Length(mean=64)
    """Per-prompt suffix length after the prefix (at least 1)."""
    output_len: Length = Length(mean=128)
    """Output limit per sample."""
    seed: int = Field(0, ge=0)
    """Seed of the lengths and tokens."""


class HFParams(Params):
    """``source: hf``: a local Hugging Face dataset (parquet / arrow file or directory at ``path``)."""

    columns: dict[Literal["prompt", "output", "max_tokens"], str | None] = {"prompt": "prompt"}
    """Column mapping: ``prompt`` (text or chat messages, required), ``output``, ``max_tokens``."""

    @model_validator(mode="after")
    def _prompt(self) -> HFParams:
        if not self.columns.get("prompt"):
            raise ValueError("columns.prompt: the prompt column is required")
        return self


class TraceParams(Params):
    """``source: trace``: a Mooncake-style JSONL trace at ``path``."""

    block_size: int = Field(512, ge=1)
    """Tokens per hash id (Mooncake: 512)."""
    seed: int = Field(0, ge=0)
    """Seed of the synthesised block tokens."""


class LLMParams(Params):
    """Parameters of the llm workload (``workload.params``)."""

    source: Literal["cnn", "sharegpt", "synthetic", "shared_prefix", "hf", "trace"] = "cnn"
    """Dataset: ``cnn`` (MLPerf's CNN/DailyMail), ``sharegpt``, ``synthetic``, ``shared_prefix``, ``hf``, ``trace``."""
    path: str | None = None
    """File (or directory for ``hf``) of the sharegpt / hf / trace sources (``None`` = a generated demo)."""
    data_dir: str | None = None
    """Directory holding ``cnn_eval.json`` (``None`` = the generated demo set)."""
    dataset_file: str | None = None
    """Dataset file, relative to ``data_dir`` unless absolute (e.g. ``sample_cnn_eval_5000.json``)."""
    count: int | None = Field(None, ge=1)
    """Use only the first N records."""
    performance_count: int | None = Field(None, ge=1)
    """QSL performance sample count (``None`` = all)."""
    prompt: Literal["tokens", "text"] = "tokens"
    """Send ``tok_input`` token ids (as the reference) or the ``input`` text."""
    max_tokens: int = Field(128, ge=1)
    """Output-token limit per sample (sources with per-sample lengths set their own)."""
    ignore_eos: bool = False
    """Ask the server to ignore EOS (vLLM ``ignore_eos``) so every answer is exactly its limit long."""
    response_format: Literal["token_ids", "text"] = "token_ids"
    """How the SUT encodes responses (MLPerf: int32 token ids)."""
    tokenizer: str | None = None
    """Tokenizer (local directory or name; ``bytes`` = UTF-8 bytes). ``None``: Llama 3.1 8B Instruct for
    ``cnn`` with data, ``bytes`` for the demo sets and the generated sources."""
    targets: dict[str, float] | None = None
    """ROUGE/length targets replacing the reference's."""
    sharegpt: ShareGPTParams = ShareGPTParams()
    synthetic: SyntheticParams = SyntheticParams()
    shared_prefix: SharedPrefixParams = SharedPrefixParams()
    hf: HFParams = HFParams()
    trace: TraceParams = TraceParams()
