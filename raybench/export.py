"""Per-request export of a run's records: one row per request, as JSON Lines or Parquet.

Reads ``records.npz`` (``records: all``) or the shards' ``records-shard<k>.npz`` (``records:
shard``) of a run directory. Without records there is nothing per request to export (the
shards shipped only histograms and counters), and the error says how to keep them.

Fields of a row (times in integer ns since the shard's T0, on the shard's monotonic clock, so a
latency is a difference of two readings of one clock; ``null`` where not measured):

``shard``, ``query_id`` (multi-turn: the conversation), ``turn`` (from 1; 0 = not a
conversation), ``sample_index``, ``intended_ns`` (scheduled send), ``send_ns`` (actual send),
``first_token_ns``, ``token_ns`` (every streamed chunk's arrival, the first included),
``end_ns``, ``latency_ns`` (end - intended), ``ttft_ns`` (first token - intended),
``input_tokens``, ``output_tokens``, ``finish_reason`` and ``error``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMATS", "ExportError", "export_run", "iter_requests"]

FORMATS = ("jsonl", "parquet")


class ExportError(ValueError):
    """A run directory that cannot be exported (one line naming the file or option)."""


def _shard_tables(run_dir: Path) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(shard, columns)`` for every shard's records in the run directory."""
    merged = run_dir / "records.npz"
    if merged.exists():
        with np.load(merged, allow_pickle=False) as z:
            shards: dict[int, dict[str, np.ndarray]] = {}
            for key in z.files:
                name, _, col = key.partition("/")
                m = re.fullmatch(r"shard(\d+)", name)
                if m and col:
                    shards.setdefault(int(m.group(1)), {})[col] = z[key]
        yield from sorted(shards.items())
        return
    files = sorted(run_dir.glob("records-shard*.npz"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not files:
        raise ExportError(f"{run_dir}: no records.npz or records-shard*.npz (run with records: all or shard, "
                          "or raybench run --export)")
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            yield int(re.sub(r"\D", "", f.stem) or 0), {k: z[k] for k in z.files}


def iter_requests(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Every request of the run as a dict (the module docstring lists the fields).

    Raises:
        ExportError: (at once, not when iterated) no such directory, or no records in it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: run directory not found")
    return _rows(run_dir, list(_shard_tables(run_dir)))


def _rows(run_dir: Path, tables: list[tuple[int, dict[str, np.ndarray]]]) -> Iterator[dict[str, Any]]:
    for shard, cols in tables:
        if "issued_ns" not in cols:
            raise ExportError(f"{run_dir}: shard {shard}'s records have no issued_ns column")
        n = int(cols["issued_ns"].shape[0])
        errors = [str(x) for x in cols.get("errors", np.zeros(0, str)).tolist()]
        finish = [str(x) for x in cols.get("finish_reasons", np.zeros(0, str)).tolist()]
        zeros = np.zeros(n, dtype=np.int64)
        n_input, fin, turn = (cols.get(k, zeros) for k in ("n_input", "finish", "turn"))
        offsets = cols.get("token_offsets")
        tokens = cols.get("token_ns", np.zeros(0, np.int64))
        lists = {k: cols[k].tolist() for k in ("query_id", "sample_index", "intended_ns", "issued_ns",
                                               "first_token_ns", "completed_ns", "n_tokens", "error")}
        n_input, fin, turn = n_input.tolist(), fin.tolist(), turn.tolist()
        for i in range(n):
            intended, ft, end, err = (lists["intended_ns"][i], lists["first_token_ns"][i], lists["completed_ns"][i],
                                      lists["error"][i])
            toks = tokens[offsets[i]:offsets[i + 1]].tolist() if offsets is not None and offsets.size > i + 1 else []
            yield {
                "shard": shard, "query_id": lists["query_id"][i], "turn": turn[i],
                "sample_index": lists["sample_index"][i], "intended_ns": intended, "send_ns": lists["issued_ns"][i],
                "first_token_ns": ft or None, "token_ns": toks, "end_ns": end or None,
                "latency_ns": end - intended if end and not err else None,
                "ttft_ns": ft - intended if ft and not err else None,
                "input_tokens": n_input[i] or None, "output_tokens": lists["n_tokens"][i] if not err else None,
                "finish_reason": finish[fin[i] - 1] if 0 < fin[i] <= len(finish) else None,
                "error": (errors[err - 1] if err <= len(errors) else f"error code {err}") if err else None,
            }


def export_run(run_dir: str | Path, fmt: str = "jsonl", out: str | Path | None = None) -> Path:
    """Write the run's requests to ``out`` (default ``RUN_DIR/requests.<fmt>``); returns the path.

    Raises:
        ExportError: unknown format, no run directory or no records (one line).
        ImportError: Parquet without pyarrow (``pip install 'raybench[export]'``).
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format: expected jsonl or parquet, got {fmt!r}")
    run_dir = Path(run_dir)
    path = Path(out) if out is not None else run_dir / f"requests.{fmt}"
    rows = iter_requests(run_dir)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write(rows, fmt, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def _write(rows: Iterator[dict[str, Any]], fmt: str, tmp: Path) -> None:
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("--format parquet needs pyarrow (pip install 'raybench[export]')") from None
        data = list(rows)
        schema = pa.schema([("shard", pa.int32()), ("query_id", pa.int64()), ("turn", pa.int32()),
                            ("sample_index", pa.int64()), ("intended_ns", pa.int64()), ("send_ns", pa.int64()),
                            ("first_token_ns", pa.int64()), ("token_ns", pa.list_(pa.int64())),
                            ("end_ns", pa.int64()), ("latency_ns", pa.int64()), ("ttft_ns", pa.int64()),
                            ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
                            ("finish_reason", pa.string()), ("error", pa.string())])
        table = pa.Table.from_pylist(data, schema=schema)
        pq.write_table(table, tmp)
