"""Sample library over a JSONL file: one ``{"prompt": ...}`` or ``{"messages": [...]}`` per line.

Optional per-line fields: ``expected`` (reference answer, for :mod:`workloads.chat.accuracy`),
``max_tokens`` (per-request limit, a positive integer). Without ``path`` a small deterministic demo file is generated
in ``$RAYBENCH_CACHE/chat-demo-<version>/prompts.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raybench.core.cache import build_once

__all__ = ["ChatLibrary", "load_library", "read_jsonl"]

DEMO_VERSION = 1


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse and validate the file.

    Raises:
        ValueError: naming the file and line of the first problem.
    """
    if not path.exists():
        raise ValueError(f"{path}: prompts file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not (isinstance(row.get("prompt"), str) or isinstance(row.get("messages"), list)):
                raise ValueError(f"{path}:{n}: needs a string 'prompt' or a list 'messages'")
            if "expected" in row and not isinstance(row["expected"], str):
                raise ValueError(f"{path}:{n}: 'expected' must be a string")
            mt = row.get("max_tokens")
            if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
                raise ValueError(f"{path}:{n}: 'max_tokens' must be a positive integer, got {mt!r}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no prompts")
    return rows


class ChatLibrary:
    """``get(i)`` = ``{"messages"|"prompt": ..., ["max_tokens": n]}`` (the openai_endpoint payload)."""

    def __init__(self, rows: Sequence[dict[str, Any]], max_tokens: int | None = None) -> None:
        self.name = "chat"
        self.rows = list(rows)
        self.expected: list[str | None] = [r.get("expected") for r in self.rows]
        self._max_tokens = max_tokens
        self._loaded: dict[int, dict[str, Any]] = {}

    @property
    def total_count(self) -> int:
        return len(self.rows)

    @property
    def performance_count(self) -> int:
        return len(self.rows)

    def load(self, indices: Sequence[int]) -> None:
        for i in indices:
            r = self.rows[i]
            s: dict[str, Any] = {"messages": r["messages"]} if "messages" in r else {"prompt": r["prompt"]}
            mt = r.get("max_tokens", self._max_tokens)
            if mt is not None:
                s["max_tokens"] = int(mt)
            self._loaded[i] = s

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(i, None)

    def get(self, index: int) -> dict[str, Any]:
        return self._loaded[index]


def _demo_path() -> Path:
    def build(d: Path) -> None:
        lines: list[dict[str, Any]] = []
        for a in range(1, 9):
            for b in (2, 3):
                lines.append({"prompt": f"What is {a} plus {b}? Answer with the number only.", "expected": str(a + b)})
        lines.append({"messages": [{"role": "system", "content": "Answer in one word."},
                                   {"role": "user", "content": "What colour is the sky on a clear day?"}],
                      "expected": "Blue"})
        (d / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")

    return build_once(f"chat-demo-{DEMO_VERSION}", build, "prompts.jsonl") / "prompts.jsonl"


def load_library(params: dict[str, Any]) -> ChatLibrary:
    """``params``: ``path`` (JSONL; None = demo), ``count``, ``max_tokens``."""
    path = Path(params["path"]) if params.get("path") else _demo_path()
    rows = read_jsonl(path)
    if params.get("count") is not None:
        rows = rows[: int(params["count"])]
    return ChatLibrary(rows, params.get("max_tokens"))
