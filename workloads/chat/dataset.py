"""Sample library over a JSONL file: one ``{"prompt": ...}`` or ``{"messages": [...]}`` per line.

Optional per-line fields: ``expected`` (reference answer, for :mod:`workloads.chat.accuracy`),
``max_tokens`` (per-request limit, a positive integer). Without ``path`` a small deterministic demo file is generated
in ``$RAYBENCH_CACHE/chat-demo-<version>/prompts.jsonl``.

Multi-turn: a line may hold a whole conversation, ``{"conversation": [{"role": "user", "content":
...}, ...]}`` (roles ``system``, ``user``, ``assistant``) or ShareGPT's ``{"conversations":
[{"from": "human", "value": ...}, {"from": "gpt", "value": ...}, ...]}``. Every user message is
one turn, and every turn is one sample. When the file holds a conversation the library exposes
``conversations`` and ``turn_payload`` (:mod:`raybench.core.conversations`): in the Concurrency
scenario each stream then plays whole conversations, sending a turn with the model's actual
earlier answers in its history; other scenarios send each turn on its own with the file's
assistant messages as its history. Single-prompt lines are then one-turn conversations.
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
            if isinstance(row, dict) and ("conversation" in row or "conversations" in row):
                row = {**row, "conversation": _conversation(row, f"{path}:{n}")}
                row.pop("conversations", None)
            elif not isinstance(row, dict) or not (isinstance(row.get("prompt"), str) or isinstance(row.get("messages"), list)):
                raise ValueError(f"{path}:{n}: needs a string 'prompt' or a list 'messages' (or a 'conversation')")
            if "expected" in row and not isinstance(row["expected"], str):
                raise ValueError(f"{path}:{n}: 'expected' must be a string")
            mt = row.get("max_tokens")
            if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
                raise ValueError(f"{path}:{n}: 'max_tokens' must be a positive integer, got {mt!r}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no prompts")
    return rows


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                   "system": "system"}


def _conversation(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The conversation of a line as OpenAI messages (``conversation`` or ShareGPT ``conversations``).

    Raises:
        ValueError: naming the file, line and message of the problem.
    """
    raw = row.get("conversation", row.get("conversations"))
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: 'conversation' must be a non-empty list of messages")
    out = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ValueError(f"{where}: conversation[{k}] must be an object")
        if "from" in m:  # ShareGPT
            role, content = _SHAREGPT_ROLES.get(str(m["from"]).lower()), m.get("value")
            if role is None:
                raise ValueError(f"{where}: conversation[{k}].from: unknown speaker {m['from']!r}")
        else:
            role, content = m.get("role"), m.get("content")
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"{where}: conversation[{k}].role: must be system, user or assistant, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"{where}: conversation[{k}]: content must be a string")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        raise ValueError(f"{where}: conversation has no user message")
    return out


class ChatLibrary:
    """``get(i)`` = ``{"messages"|"prompt": ..., ["max_tokens": n]}`` (the openai_endpoint payload).

    One sample per line, or per user turn of a conversation line (see the module docstring).
    """

    def __init__(self, rows: Sequence[dict[str, Any]], max_tokens: int | None = None,
                 think_time_s: float = 0.0, tokenizer: str | None = None) -> None:
        self.name = "chat"
        self.tokenizer = tokenizer
        self._tok: Any = None
        self._isl: dict[int, int] = {}
        self.think_time_s = float(think_time_s)
        self.rows: list[dict[str, Any]] = []
        self._turn_of: list[tuple[list[dict[str, str]], int]] = []  # per sample: (conversation, user turn)
        convs: list[list[int]] = []
        for r in rows:
            if "conversation" not in r:
                convs.append([len(self.rows)])
                self.rows.append(r)
                self._turn_of.append(([], -1))
                continue
            msgs = r["conversation"]
            ids = []
            for t in range(sum(m["role"] == "user" for m in msgs)):
                ids.append(len(self.rows))
                self.rows.append({"messages": _history(msgs, t, None), **{k: r[k] for k in ("max_tokens",) if k in r}})
                self._turn_of.append((msgs, t))
            convs.append(ids)
        self.conversations: list[list[int]] | None = convs if any(r for r, _ in self._turn_of) else None
        self.expected: list[str | None] = [r.get("expected") for r in self.rows]
        self._max_tokens = max_tokens
        self._loaded: dict[int, dict[str, Any]] = {}

    def input_tokens(self, index: int) -> int:
        """Input tokens of a loaded sample by ``tokenizer`` (0 without one): the prompt with the
        tokenizer's special tokens, or the messages through its chat template (with the generation
        prompt; without a template, the contents joined by newlines). A multi-turn sample counts
        the file's history, not the model's answers."""
        return self._isl.get(index, 0)

    def _count(self, sample: dict[str, Any]) -> int:
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.tokenizer)
        tok = self._tok
        if "prompt" in sample:
            return len(tok(sample["prompt"])["input_ids"])
        msgs = sample["messages"]
        if getattr(tok, "chat_template", None):
            return len(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True))
        return len(tok("\n".join(str(m.get("content", "")) for m in msgs))["input_ids"])

    def turn_payload(self, index: int, answers: Sequence[bytes]) -> dict[str, Any]:
        """Turn ``index``'s payload with the conversation's actual earlier ``answers`` as history."""
        msgs, t = self._turn_of[index]
        base = self._loaded[index]
        if t <= 0:
            return base
        return {**base, "messages": _history(msgs, t, [a.decode("utf-8", "replace") for a in answers])}

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
            if self.tokenizer:
                self._isl[i] = self._count(s)

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(i, None)

    def get(self, index: int) -> dict[str, Any]:
        return self._loaded[index]


def _history(msgs: list[dict[str, str]], turn: int, answers: list[str] | None) -> list[dict[str, str]]:
    """The messages up to and including user message ``turn`` (from 0).

    With ``answers``, the file's assistant messages are replaced by them: ``answers[k]`` follows
    user message ``k``. Without, the file's own assistant messages are kept.
    """
    out: list[dict[str, str]] = []
    user = -1
    for m in msgs:
        if m["role"] == "user":
            if answers is not None and user >= 0:
                out.append({"role": "assistant", "content": answers[user] if user < len(answers) else ""})
            user += 1
            out.append(dict(m))
            if user == turn:
                return out
        elif m["role"] == "assistant":
            if answers is None:
                out.append(dict(m))
        else:
            out.append(dict(m))
    return out


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
    """``params``: ``path`` (JSONL; None = demo), ``count`` (lines), ``max_tokens``, ``think_time_s``,
    ``tokenizer``."""
    path = Path(params["path"]) if params.get("path") else _demo_path()
    rows = read_jsonl(path)
    if params.get("count") is not None:
        rows = rows[: int(params["count"])]
    return ChatLibrary(rows, params.get("max_tokens"), float(params.get("think_time_s") or 0.0),
                       params.get("tokenizer"))
