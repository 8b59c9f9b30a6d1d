"""Parameters of the chat workload."""

from __future__ import annotations

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["ChatParams"]


class ChatParams(Params):
    """Parameters of the chat workload (``workload.params``)."""

    path: str | None = None
    """JSONL of ``{"prompt": ...}`` or ``{"messages": [...]}`` per line (``None`` = the generated demo)."""
    count: int | None = Field(None, ge=1)
    """Use only the first N lines."""
    max_tokens: int | None = Field(None, ge=1)
    """Output-token limit of lines that set none (``None`` = the SUT's)."""
    tokenizer: str | None = None
    """Hugging Face tokenizer (name or local directory) that counts input tokens when the server
    reports no ``usage`` (counted when samples load, before timing; ``None`` = not counted)."""
    think_time_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Multi-turn: pause between an answer and the conversation's next turn (Concurrency scenario)."""
    targets: dict[str, float] | None = None
    """Minimum metric values that decide ``passed`` (``None`` = no target)."""
