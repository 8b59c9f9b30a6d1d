"""Readers of the llm workload's external formats: ShareGPT JSON, local Hugging Face data, traces.

Each reader returns plain rows and stops at the first bad one with one line naming the file and
the line (JSON, JSONL) or the row (parquet, arrow).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["read_hf_rows", "read_sharegpt", "read_trace"]

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
          "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}
_WS = re.compile(r"\s*")


def _json_values(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` for each record of a JSON array, or of a JSONL file (one value a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    dec = json.JSONDecoder()
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text.startswith("[", i):  # a JSON array: decode element by element to know each one's line
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        if text.startswith("]", i):
            return
        while True:
            line = text.count("\n", 0, i) + 1
            try:
                value, i = dec.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{text.count(chr(10), 0, exc.pos) + 1}: not valid JSON ({exc.msg})") from None
            yield line, value
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text.startswith(",", i):
                i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", i):
                return
            else:
                raise ValueError(f"{path}:{text.count(chr(10), 0, i) + 1}: expected ',' or ']' in the JSON array")
    for n, line_text in enumerate(text.splitlines(), 1):
        if not line_text.strip():
            continue
        try:
            yield n, json.loads(line_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def read_sharegpt(path: Path, turns: str = "first") -> tuple[list[dict[str, Any]], int]:
    """ShareGPT conversations -> ``[{"messages", "prompt", "output"}]`` and the number skipped.

    Records are ``{"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}``
    (``role``/``content`` also accepted), in a JSON array or JSONL. ``turns="first"``: the first
    user turn is the prompt and the assistant turn after it the reference; ``"all"``: the whole
    conversation up to its last assistant turn is the prompt (messages) and that turn the reference.
    Conversations with no user turn answered by the assistant are skipped (as vLLM does).

    Raises:
        ValueError: ``<file>:<line>: ...`` for a record that is not a conversation.
    """
    out: list[dict[str, Any]] = []
    skipped = 0
    for line, rec in _json_values(path):
        conv = rec.get("conversations", rec.get("conversation")) if isinstance(rec, dict) else None
        if not isinstance(conv, list):
            raise ValueError(f"{path}:{line}: a ShareGPT record needs a list 'conversations'")
        msgs = []
        for t, turn in enumerate(conv):
            speaker = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
            value = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
            if not isinstance(speaker, str) or not isinstance(value, str):
                raise ValueError(f"{path}:{line}: turn {t} needs string 'from' and 'value'")
            role = _ROLES.get(speaker.lower())
            if role is None:
                raise ValueError(f"{path}:{line}: turn {t} has unknown speaker {speaker!r}")
            msgs.append({"role": role, "content": value})
        pairs = [i for i in range(1, len(msgs)) if msgs[i]["role"] == "assistant" and msgs[i - 1]["role"] == "user"]
        if not pairs:
            skipped += 1
            continue
        end = pairs[0] if turns == "first" else pairs[-1]
        context = [msgs[end - 1]] if turns == "first" else msgs[:end]
        out.append({"messages": context, "prompt": context[-1]["content"], "output": msgs[end]["content"]})
    return out, skipped


def read_trace(path: Path) -> list[dict[str, Any]]:
    """A Mooncake-style JSONL trace: ``{"timestamp": ms, "input_length": n, "output_length": m,
    "hash_ids": [...]}`` per line (``hash_ids`` optional); timestamps must not decrease.

    Raises:
        ValueError: ``<file>:<line>: ...`` naming the bad field.
    """
    rows: list[dict[str, Any]] = []
    last = None
    for line, rec in _json_values(path):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{line}: expected a JSON object")
        ts = rec.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < 0:
            raise ValueError(f"{path}:{line}: 'timestamp' must be a number of ms >= 0")
        for k in ("input_length", "output_length"):
            v = rec.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{path}:{line}: {k!r} must be an integer >= 1")
        hashes = rec.get("hash_ids", [])
        if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0
                                                   for h in hashes):
            raise ValueError(f"{path}:{line}: 'hash_ids' must be a list of integers >= 0")
        if last is not None and ts < last:
            raise ValueError(f"{path}:{line}: 'timestamp' {ts} is before the previous line's {last}")
        last = ts
        rows.append({"timestamp": ts, "input_length": rec["input_length"], "output_length": rec["output_length"],
                     "hash_ids": hashes})
    if not rows:
        raise ValueError(f"{path}: the trace has no lines")
    return rows


def read_hf_rows(path: Path, columns: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Rows of a local Hugging Face dataset: a parquet file, an arrow file (``save_to_disk``'s
    ``data-*.arrow`` stream files, or the IPC file format), or a directory of them (sorted).

    ``columns`` maps ``prompt`` (required: a string, or a list of chat messages), ``output``
    (optional reference) and ``max_tokens`` (optional per-row output limit) to column names.

    Raises:
        ValueError: a missing file or column, or ``<file>: row <n>: ...`` for a bad value (rows of
            each file counted from 1, as JSON and JSONL lines are).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise ValueError(f"{path}: file not found")
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".arrow")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .parquet or .arrow files in the directory")
    rows: list[dict[str, Any]] = []
    for f in files:
        try:
            if f.suffix == ".parquet":
                table = pq.read_table(f)
            else:
                try:
                    table = pa.ipc.open_stream(pa.memory_map(str(f))).read_all()
                except pa.ArrowInvalid:
                    table = pa.ipc.open_file(pa.memory_map(str(f))).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            kind = "parquet" if f.suffix == ".parquet" else "arrow"
            hint = "" if f.suffix in (".parquet", ".arrow") else "; source hf reads .parquet or .arrow files"
            raise ValueError(f"{f}: not a readable {kind} file ({str(exc).splitlines()[0]}){hint}") from None
        for key, col in columns.items():
            if col is not None and col not in table.column_names:
                raise ValueError(f"{f}: no column {col!r} (workload.params.hf.columns.{key}); "
                                 f"columns: {', '.join(table.column_names)}")
        data = {k: table.column(c).to_pylist() for k, c in columns.items() if c is not None}
        for i in range(table.num_rows):
            prompt = data["prompt"][i]
            ok_msgs = isinstance(prompt, list) and prompt and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)
            if not (isinstance(prompt, str) and prompt) and not ok_msgs:
                raise ValueError(f"{f}: row {i + 1}: column {columns['prompt']!r} must be a non-empty string or a "
                                 "list of {role, content} messages")
            row: dict[str, Any] = {"prompt": prompt}
            if "output" in data:
                out = data["output"][i]
                if not isinstance(out, str):
                    raise ValueError(f"{f}: row {i + 1}: column {columns['output']!r} must be a string")
                row["output"] = out
            if "max_tokens" in data:
                m = data["max_tokens"][i]
                if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                    raise ValueError(f"{f}: row {i + 1}: column {columns['max_tokens']!r} must be an integer >= 1")
                row["max_tokens"] = m
            rows.append(row)
    return rows
