"""The token counter of the llm workload's datasets: the demo's UTF-8 bytes, or a local HF tokenizer.

Generated prompts (synthetic, shared-prefix, trace) are built from *safe* tokens: tokens whose
text, re-encoded, gives back exactly that token, and that join without merging (printable ASCII
bytes for the bytes tokenizer; single-token ``" word"`` pieces of a byte-level BPE). A prompt of
``n`` safe tokens is then exactly ``n`` tokens long whether it is sent as ids or as text.
Counts never include special tokens (BOS): ``encode(text, add_special_tokens=False)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import Any

__all__ = ["BYTES_TOKENIZER", "Tokenizer", "get_tokenizer"]

BYTES_TOKENIZER = "bytes"
"""Tokenizer name of the demo sets: token ids are the UTF-8 bytes of the text."""
_WORD = re.compile(r"^ [A-Za-z]{2,}$")


class Tokenizer:
    """``encode``/``decode`` plus the safe vocabulary generated prompts are drawn from.

    Args:
        name: ``"bytes"`` or a local tokenizer directory / name ``transformers`` can load offline.
        hf: an already loaded ``transformers`` tokenizer (tests, the tiny BPE).
    """

    def __init__(self, name: str, hf: Any = None) -> None:
        self.name = name
        self._hf = hf
        if name != BYTES_TOKENIZER and hf is None:
            try:
                from transformers import AutoTokenizer

                self._hf = AutoTokenizer.from_pretrained(name)
            except Exception as exc:  # noqa: BLE001 - any load failure is a config error
                raise ValueError(f"workload.params.tokenizer: cannot load {name!r} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

    def encode(self, text: str) -> list[int]:
        if self._hf is None:
            return list(text.encode("utf-8"))
        return list(self._hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        if self._hf is None:
            return bytes(int(t) & 0xFF for t in ids).decode("utf-8", "replace")
        return str(self._hf.decode(list(ids), skip_special_tokens=True))

    def count(self, text: str) -> int:
        return len(self.encode(text))

    @cached_property
    def safe_ids(self) -> list[int]:
        """Token ids that round-trip alone and side by side (sorted; at least 16 of them).

        Raises:
            ValueError: the tokenizer has too few such tokens to build prompts from.
        """
        if self._hf is None:
            return list(range(33, 127))  # printable ASCII but space: any sequence of them is its own text
        special = set(getattr(self._hf, "all_special_ids", []) or [])
        ids = []
        for t in range(len(self._hf)):
            if t in special:
                continue
            text = self._hf.decode([t])
            if _WORD.match(text) and self.encode(text) == [t]:
                ids.append(t)
        probe = ids[:64]
        if len(ids) < 16 or self.encode(self.decode(probe)) != probe:
            raise ValueError(f"workload.params.tokenizer: {self.name!r} has too few single-token words "
                             f"({len(ids)}) to build exact-length prompts")
        return ids


def get_tokenizer(name: str | None, hf: Any = None) -> Tokenizer:
    """The tokenizer ``name`` (``None`` or ``"bytes"``: the bytes tokenizer)."""
    return Tokenizer(name or BYTES_TOKENIZER, hf)
