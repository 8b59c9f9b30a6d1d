"""``mlperf_log_accuracy.json``: LoadGen's accuracy log, and reading it back.

Format (as LoadGen writes it): a JSON array, one object per logged sample,
``{"seq_id": int, "qsl_idx": int, "data": "<uppercase hex of the response bytes>"}``, then
``"token_data"`` (uppercase hex of the first token's data as the SUT reported it with
``FirstTokenComplete``; only for a sample whose first token was reported) and ``"token_count"``
when token latencies are used. The official accuracy scripts and TEST06's verification read it
unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raybench.core.logs.atomic import atomic_write_text

__all__ = ["read_accuracy_log", "write_accuracy_log"]


def write_accuracy_log(path: str | Path, entries: Iterable[tuple[Any, ...]], with_token_count: bool = False) -> Path:
    """Write entries ``(seq_id, qsl_idx, data, n_tokens[, token_data])`` sorted by ``seq_id``.

    ``token_data`` (the first token's bytes, or ``None``) is written only with ``with_token_count``
    (LoadGen keeps first tokens only when token latencies are on).
    """
    parts = []
    for e in sorted(entries, key=lambda e: e[0]):
        seq_id, qsl_idx, data, n_tokens = e[:4]
        item = f'{{ "seq_id" : {int(seq_id)}, "qsl_idx" : {int(qsl_idx)}, "data" : "{bytes(data).hex().upper()}"'
        if with_token_count:
            token_data = e[4] if len(e) > 4 else None
            if token_data is not None:
                item += f', "token_data" : "{bytes(token_data).hex().upper()}"'
            item += f', "token_count" : {int(n_tokens)}'
        parts.append(item + " }")
    body = "[\n" + ",\n".join(parts) + ("\n" if parts else "") + "]\n"
    return atomic_write_text(path, body)


def read_accuracy_log(path: str | Path) -> list[tuple[int, bytes]]:
    """Read ``(qsl_idx, data)`` pairs back from an accuracy log.

    Raises:
        ValueError: naming the file when it is not a LoadGen accuracy log.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: accuracy log not found (run with --mode AccuracyOnly first)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON array of accuracy entries")
    out = []
    for i, item in enumerate(items):
        try:
            out.append((int(item["qsl_idx"]), bytes.fromhex(item["data"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: entry {i} is malformed ({exc})") from None
    return out
