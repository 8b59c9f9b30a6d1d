"""Parameters of the llm (Llama 3.1 8B, CNN/DailyMail) workload."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["LLMParams"]


class LLMParams(Params):
    """Parameters of the llm workload (``workload.params``)."""

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
    """Output-token limit per sample."""
    response_format: Literal["token_ids", "text"] = "token_ids"
    """How the SUT encodes responses (MLPerf: int32 token ids)."""
    tokenizer: str = "meta-llama/Llama-3.1-8B-Instruct"
    """Tokenizer that decodes token-id responses for ROUGE."""
    targets: dict[str, float] | None = None
    """ROUGE/length targets replacing the reference's."""
