"""Per-sample records (columnar numpy) and the report a shard returns.

One row per issued sample. Times are integer nanoseconds relative to the shard's start time
T0 (its own monotonic clock), so rows from different shards line up on the common schedule
while every latency is a difference of two readings of one clock.

Columns:
    query_id:      global query index within its phase (Offline: the batch's first sample)
    phase:         phase index (accuracy mode runs one phase per loadable set)
    seq_id:        global sample sequence id (``seq_id`` of the accuracy log)
    sample_index:  qsl index
    intended_ns:   scheduled send time (LoadGen's ``scheduled_time``)
    issued_ns:     actual send time; lateness = issued - intended
    first_token_ns: first token arrival (0 if not streaming)
    completed_ns:  completion time (0 if never completed)
    n_tokens:      output tokens (0 if not a token workload)
    error:         0 = ok, else 1 + index into ``ShardReport.errors``
    sut_ns:        time spent inside the SUT (measured by the replica, or the SUT call in-shard)
    n_input:       input tokens (0 if not known)
    finish:        0 = no finish reason, else 1 + index into ``ShardReport.finish_reasons``
    turn:          multi-turn conversations: the turn number from 1 (``query_id`` is then the
                   conversation); 0 = not part of a conversation

With token times kept (any records mode), two more arrays travel beside the columns:
``token_ns`` (every streamed chunk's arrival, ns since T0, all samples concatenated) and
``token_offsets`` (``size + 1`` entries: row ``i``'s chunks are ``token_ns[off[i]:off[i+1]]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.aggregate import RunStats

__all__ = ["COLUMNS", "SNAPSHOT_FIELDS", "RecordBuffer", "ShardReport", "pack_snapshots",
           "write_records_file"]

COLUMNS: dict[str, Any] = {
    "query_id": np.int64,
    "phase": np.int16,
    "seq_id": np.int64,
    "sample_index": np.int64,
    "intended_ns": np.int64,
    "issued_ns": np.int64,
    "first_token_ns": np.int64,
    "completed_ns": np.int64,
    "n_tokens": np.int32,
    "error": np.int32,
    "sut_ns": np.int64,
    "n_input": np.int32,
    "finish": np.int16,
    "turn": np.int16,
}


class RecordBuffer:
    """Growable columnar storage for sample records."""

    def __init__(self, capacity: int = 1024) -> None:
        capacity = max(16, int(capacity))
        self.size = 0
        self.cols: dict[str, np.ndarray] = {k: np.zeros(capacity, dtype=t) for k, t in COLUMNS.items()}

    def reserve(self, n: int) -> int:
        """Reserve ``n`` rows; returns the index of the first one."""
        start = self.size
        need = start + n
        cap = self.cols["query_id"].shape[0]
        if need > cap:
            new_cap = max(need, cap * 2)
            for k, arr in self.cols.items():
                grown = np.zeros(new_cap, dtype=arr.dtype)
                grown[:start] = arr[:start]
                self.cols[k] = grown
        self.size = need
        return start

    def freeze(self) -> dict[str, np.ndarray]:
        """Trimmed copies of the columns (what travels in a report)."""
        return {k: v[: self.size].copy() for k, v in self.cols.items()}


@dataclass
class ShardReport:
    """Everything one shard measured; plain data, picklable, mergeable.

    Attributes:
        shard: shard index.
        node: where it ran (hostname or Ray node id).
        stats: the shard's histograms and exact counters (what the verdict is computed from).
        accuracy: ``(seq_id, qsl_idx, payload, n_tokens, first_token_data)`` for samples whose
            response is logged (``first_token_data``: the SUT's first token, or ``None``).
        snapshots: per-second progress packed as columns (:data:`SNAPSHOT_FIELDS`: time, issued,
            completed, errors, in flight, the window's count, latency p50/p99 and lateness p99;
            -1 where a window had no completion): 72 bytes a second.
        records: the shard's per-sample records, only with ``records: all``.
        errors: error reasons; ``records["error"] == i + 1`` refers to ``errors[i]``.
        records_file: where the shard wrote its records, with ``records: shard``.
        status: ``"ok"``, ``"deadline"`` (cut by the run deadline), ``"aborted"`` or ``"failed"``.
        failure: why the shard did not finish normally.
        start_ns: T0 on this shard's monotonic clock; ``t0_wall_ns``: T0 on the wall clock.
        queries_issued: queries sent to the SUT.
        end_reason: why issuing stopped (``"plan exhausted"``, ``"min duration and min queries
            met"``, ``"max duration reached"``, ...).
    """

    shard: int
    node: str = ""
    stats: RunStats = field(default_factory=RunStats)
    accuracy: list[tuple[int, int, bytes, int, bytes | None]] = field(default_factory=list)
    snapshots: dict[str, np.ndarray] = field(default_factory=dict)
    records: dict[str, np.ndarray] | None = None
    errors: list[str] = field(default_factory=list)
    records_file: str | None = None
    status: str = "ok"
    failure: str | None = None
    start_ns: int = 0
    t0_wall_ns: int = 0
    queries_issued: int = 0
    end_reason: str = ""
    sut_name: str = ""
    finish_reasons: list[str] = field(default_factory=list)


SNAPSHOT_FIELDS = ("t_ns", "issued", "completed", "errors", "in_flight", "window_completed", "p50_ns", "p99_ns",
                   "lateness_p99_ns")


def pack_snapshots(snaps: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Progress snapshot dicts as int64 columns (:data:`SNAPSHOT_FIELDS`; -1 where a key is missing)."""
    return {k: np.array([int(s.get(k, -1)) for s in snaps], dtype=np.int64) for k in SNAPSHOT_FIELDS}


def write_records_file(path: str | Path, cols: dict[str, np.ndarray], errors: list[str],
                       finish_reasons: list[str] | None = None) -> Path:
    """Write one shard's records as ``.npz`` (columns plus the error and finish reasons), atomically."""
    import io

    from raybench.core.logs.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **cols, errors=np.array(errors, dtype=object).astype(str),
                        finish_reasons=np.array(finish_reasons or [], dtype=object).astype(str))
    return atomic_write_bytes(Path(path), buf.getvalue())
