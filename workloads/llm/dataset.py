"""CNN/DailyMail sample library for Llama 3.1 8B, in the MLPerf reference's JSON format.

The reference (``language/llama3.1-8b/dataset.py``) reads ``cnn_eval.json`` (13,368 samples;
``sample_cnn_eval_5000.json`` for edge) with pandas; each record has ``input`` (the templated
prompt text), ``tok_input`` (its Llama 3.1 token ids) and ``output`` (the reference summary).
We read the same file with :mod:`json` (pandas is not a dependency), accepting both the
records layout (a list of objects) and pandas' default columns layout (``{column: {row: value}}``).

Without ``data_dir``, a deterministic demo set is generated whose "tokenizer" is UTF-8 bytes
(token id = byte value), so the whole path prompt ids -> response ids -> decode -> ROUGE runs
offline with no model and no tokenizer download.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raybench.core.cache import build_once

__all__ = ["BYTES_TOKENIZER", "LLMLibrary", "demo_dir", "load_library", "read_records"]

BYTES_TOKENIZER = "bytes"
"""Tokenizer name of the demo set: token ids are the UTF-8 bytes of the text."""
DEMO_VERSION = 1
DEMO_COUNT = 24
_FIELDS = ("input", "tok_input", "output")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a reference-format dataset file into a list of ``{input, tok_input, output}`` dicts.

    Raises:
        ValueError: naming the file and the problem (not JSON, missing field, bad row).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: dataset file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(raw, dict):  # pandas to_json default: {column: {row_index: value}} or lists
        missing = [f for f in ("tok_input", "output") if f not in raw]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        cols = {k: (list(v.values()) if isinstance(v, dict) else list(v)) for k, v in raw.items() if k in _FIELDS}
        n = len(cols["output"])
        records = [{k: cols[k][i] for k in cols} for i in range(n)]
    elif isinstance(raw, list):
        records = raw
    else:
        raise ValueError(f"{path}: expected a list of records or a column mapping")
    for i, r in enumerate(records):
        if not isinstance(r, dict) or "tok_input" not in r or "output" not in r:
            raise ValueError(f"{path}: record {i} lacks 'tok_input' or 'output'")
        if not isinstance(r["tok_input"], list) or not all(isinstance(t, int) for t in r["tok_input"]):
            raise ValueError(f"{path}: record {i} field 'tok_input' must be a list of ints")
    return records


class LLMLibrary:
    """Query sample library over reference-format records.

    ``get(i)`` returns ``{"prompt": token ids (or text), "max_tokens": n}``, the payload the
    ``openai_endpoint`` and vLLM SUTs accept. ``decode`` turns response token ids back into text
    with the dataset's tokenizer (for the accuracy script).
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        *,
        name: str = "llm",
        prompt: str = "tokens",
        max_tokens: int = 128,
        performance_count: int | None = None,
        tokenizer: str | None = None,
    ) -> None:
        if prompt not in ("tokens", "text"):
            raise ValueError(f"prompt: expected 'tokens' or 'text', got {prompt!r}")
        if prompt == "text" and any("input" not in r for r in records):
            raise ValueError("prompt: 'text' needs the 'input' field in every record")
        self.name = name
        self.records = list(records)
        self.targets = [r["output"] for r in self.records]
        self.tokenizer = tokenizer
        self._key = "tok_input" if prompt == "tokens" else "input"
        self._max_tokens = int(max_tokens)
        self._perf = min(int(performance_count or len(self.records)), len(self.records))
        self._loaded: dict[int, dict[str, Any]] = {}
        self._tok: Any = None

    @property
    def total_count(self) -> int:
        return len(self.records)

    @property
    def performance_count(self) -> int:
        return self._perf

    def load(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded[i] = {"prompt": self.records[i][self._key], "max_tokens": self._max_tokens}

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(i, None)

    def get(self, index: int) -> dict[str, Any]:
        sample = self._loaded.get(index)
        if sample is None:
            raise KeyError(f"sample {index} is not loaded")
        return sample

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text, skipping special tokens (as the reference ``batch_decode``).

        Raises:
            ValueError: when the library has no tokenizer configured.
        """
        if self.tokenizer == BYTES_TOKENIZER:
            return bytes(int(t) & 0xFF for t in ids).decode("utf-8", "replace")
        if not self.tokenizer:
            raise ValueError("tokenizer: needed to decode token-id responses (set params.tokenizer)")
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.tokenizer)
        return self._tok.decode(list(ids), skip_special_tokens=True)


def demo_dir() -> Path:
    """Where the demo set lives: ``$RAYBENCH_CACHE/llm-demo-<version>`` (generated on first use)."""
    def build(d: Path) -> None:
        (d / "cnn_eval.json").write_text(json.dumps(_demo_records()), encoding="utf-8")

    return build_once(f"llm-demo-{DEMO_VERSION}", build, "cnn_eval.json")


_SUBJECTS = ["The city council", "A local bakery", "The national team", "Researchers", "A small startup",
             "The museum", "Firefighters", "The school board"]
_VERBS = ["approved", "announced", "celebrated", "rejected", "launched", "postponed", "completed", "reviewed"]
_OBJECTS = ["a new budget", "a community festival", "the season opener", "a vaccine trial",
            "an electric bus", "a dinosaur exhibit", "a rescue drill", "a reading program"]
_DETAILS = ["after months of debate.", "despite heavy rain.", "with strong public support.",
            "to mixed reviews.", "ahead of schedule.", "for the third year in a row."]


def _demo_records() -> list[dict[str, Any]]:
    rng = random.Random(20260321)
    out = []
    for _ in range(DEMO_COUNT):
        sents = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_DETAILS)}"
                 for _ in range(rng.randint(4, 7))]
        article = " ".join(sents)
        prompt = f"Summarize the following news article in 128 tokens.\n\n{article}\n\nSummary:"
        out.append({"input": prompt, "tok_input": list(prompt.encode("utf-8")), "output": " ".join(sents[:2])})
    return out


def load_library(params: dict[str, Any]) -> LLMLibrary:
    """Build the library from ``params`` (``data_dir``/``dataset_file``, ``count``, ``prompt``...).

    Raises:
        ValueError: on a missing or malformed dataset file (the message names it).
    """
    data_dir = params.get("data_dir")
    tokenizer = params.get("tokenizer")
    if data_dir is None and not params.get("dataset_file"):
        path = demo_dir() / "cnn_eval.json"
        tokenizer = BYTES_TOKENIZER
    else:
        f = params.get("dataset_file") or "cnn_eval.json"
        path = Path(f) if data_dir is None or os.path.isabs(f) else Path(data_dir) / f
    records = read_records(path)
    count = params.get("count")
    if count is not None:
        records = records[: int(count)]
    return LLMLibrary(
        records,
        prompt=params.get("prompt", "tokens"),
        max_tokens=int(params.get("max_tokens", 128)),
        performance_count=params.get("performance_count"),
        tokenizer=tokenizer,
    )
