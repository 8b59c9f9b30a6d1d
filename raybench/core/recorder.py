"""What one shard measured: its per-sample records and the statistics folded from them.

:class:`ShardRecorder` is the bookkeeping half of a shard (the issuing half is
:class:`~raybench.core.loadgen.ShardRunner`): it records each query's outcome into the columnar
buffer, folds completed queries into :class:`~raybench.core.aggregate.RunStats` in small chunks,
keeps the current progress window, and fills the shard's report (statistics, error reasons,
records if asked for).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from raybench.core.aggregate import RunStats
from raybench.core.histogram import Histogram
from raybench.core.plan import ShardSlice
from raybench.core.protocols import Query, Response
from raybench.core.records import RecordBuffer, write_records_file
from raybench.core.tokens import inter_token_latencies_ns

__all__ = ["FOLD_ROWS", "ShardRecorder"]

_MAX_ERROR_KINDS = 64
FOLD_ROWS = 2048
"""Fold completed queries into the statistics once this many are waiting: a fold of a whole
second at 50k QPS takes ~15 ms of the loop's time in one piece, a fold of 2048 well under 1 ms."""


class ShardRecorder:
    """Records query outcomes and folds them into statistics (one per shard).

    Args:
        slice_: the shard's slice (capacity, latency bounds, accuracy logging).
        keep_records: keep the per-sample records for the report (``records: all``).
        records_path: write the records to this ``.npz`` at the end (``records: shard``).
        input_tokens: the workload's count of a sample's input tokens (``library.input_tokens``),
            used when the SUT reports none.

    Input tokens and the finish reason of a sample come from its :class:`Response`
    (``n_input_tokens``, ``finish_reason``), else from the query's ``extra`` (``prompt_tokens``,
    ``finish_reason``, set by a streaming SUT), else (input tokens) from ``input_tokens``.
    """

    def __init__(self, slice_: ShardSlice, *, keep_records: bool = False, records_path: str | None = None,
                 input_tokens: Callable[[int], int] | None = None) -> None:
        self.buf = RecordBuffer(slice_.sample_capacity or 4096)
        self.stats = RunStats(bounds=dict(slice_.bounds), by_schedule=slice_.scenario.final_query_by_schedule(),
                              slo=dict(getattr(slice_, "slo", None) or {}))
        self.finish_codes: dict[str, int] = {}
        self._input_tokens = input_tokens
        # Every streamed chunk's time, only when records are kept (the export needs them): flat
        # int64 buffers (8 bytes a chunk), in completion order, ordered by row when frozen.
        self._keep_tokens = bool(keep_records or records_path)
        self._tok_rows, self._tok_counts, self._tok_flat = array("q"), array("q"), array("q")
        self._t0 = 0
        self.keep_records = keep_records
        self.records_path = records_path
        # (seq_id, qsl_idx, data, n_tokens, first token's data or None) of the logged samples
        self.accuracy: list[tuple[int, int, bytes, int, bytes | None]] = []
        self.completed_samples = 0
        self.error_samples = 0
        self.error_codes: dict[str, int] = {}
        self._log_all = slice_.accuracy_log_all
        self._query_latency = slice_.scenario.query_latency_applies()
        self._done_rows: list[int] = []  # first row of each completed query, in completion order
        self._done_sizes: list[int] = []
        self._done_ptr = 0  # queries folded into the statistics
        self._snap_ptr = 0  # queries already counted in a progress window
        self._window = (Histogram(), Histogram())  # latency and lateness since the last window
        self._token_gaps: list[np.ndarray] = []

    # ------------------------------------------------------------------ recording
    def code(self, reason: str) -> int:
        """The error code of a failure reason (at most 64 distinct reasons are kept)."""
        code = self.error_codes.get(reason)
        if code is None:
            if len(self.error_codes) >= _MAX_ERROR_KINDS:
                reason = "other errors (too many distinct reasons)"
                code = self.error_codes.get(reason)
                if code is not None:
                    return code
            code = len(self.error_codes) + 1
            self.error_codes[reason] = code
        return code

    def failed(self, row: int, n: int, completed_rel: int, reason: str) -> None:
        """Record a query that ended without an answer (cancelled before it was sent)."""
        cols = self.buf.cols
        rows: slice | int = row if n == 1 else slice(row, row + n)
        cols["completed_ns"][rows] = completed_rel
        cols["error"][rows] = self.code(reason)
        self.error_samples += n
        self._done(row, n)

    def finish(self, row: int, n: int, q: Query, t0: int, done: int, resps: Sequence[Response], err: str | None,
               seq0: int, indices: list[int], log_mask: np.ndarray | None, issued_rel: int) -> None:
        """Record a query's outcome (``done`` and the query's token marks on the shard's clock)."""
        cols = self.buf.cols
        done_rel = done - t0
        if n == 1 and err is None and not q.first_token_ns and not self._log_all and log_mask is None:
            # The common case (one sample, answered, no tokens, not logged): scalar writes only.
            r = resps[0]
            cols["completed_ns"][row] = done_rel
            cols["sut_ns"][row] = r.sut_ns or (done_rel - issued_rel)
            if r.error:
                cols["error"][row] = self.code(r.error)
                self.error_samples += 1
            else:
                if r.n_tokens:
                    cols["n_tokens"][row] = r.n_tokens
                self._meta(row, r, q.extra, q.indices[0])
            self._done(row, 1)
            return
        rows: slice | int = row if n == 1 else slice(row, row + n)
        cols["completed_ns"][rows] = done_rel
        if resps:  # time inside the SUT: as the replica measured it, else the whole SUT call
            cols["sut_ns"][rows] = resps[0].sut_ns or (done_rel - issued_rel)
        if q.first_token_ns:
            cols["first_token_ns"][rows] = q.first_token_ns - t0
        if q.token_ns and len(q.token_ns) > 1:
            self._token_gaps.append(inter_token_latencies_ns(q.token_ns))
        if self._keep_tokens and n == 1 and q.token_ns:
            self._t0 = t0
            self._tok_rows.append(row)
            self._tok_counts.append(len(q.token_ns))
            self._tok_flat.extend(q.token_ns)
        if err is not None:
            cols["error"][rows] = self.code(err)
            self.error_samples += n
        else:
            for j, r in enumerate(resps):
                if r.error:
                    cols["error"][row + j] = self.code(r.error)
                    self.error_samples += 1
                    continue
                if r.n_tokens:
                    cols["n_tokens"][row + j] = r.n_tokens
                self._meta(row + j, r, q.extra if n == 1 else None, indices[j])
                if self._log_all or (log_mask is not None and log_mask[j]):
                    self.accuracy.append((seq0 + j, indices[j], bytes(r.data), int(r.n_tokens),
                                          q.first_token_data if n == 1 else None))
        self._done(row, n)

    def wants_token_data(self, n: int, log_mask: np.ndarray | None) -> bool:
        """A single-sample query whose answer goes to the accuracy log: the SUT is asked for its
        first token's data (``Query.want_token_data``), LoadGen's ``token_data`` of that entry."""
        return n == 1 and (self._log_all or (log_mask is not None and bool(log_mask[0])))

    def _meta(self, row: int, r: Response, extra: dict[str, Any] | None, index: int) -> None:
        """The sample's input tokens and finish reason (see the class docstring for the sources)."""
        isl = r.n_input_tokens
        fr = r.finish_reason
        if extra:
            isl = isl or int(extra.get("prompt_tokens") or 0)
            fr = fr or extra.get("finish_reason")
        if not isl and self._input_tokens is not None:
            isl = int(self._input_tokens(index))
        cols = self.buf.cols
        if isl:
            cols["n_input"][row] = isl
        if fr:
            code = self.finish_codes.get(fr)
            if code is None:
                if len(self.finish_codes) >= _MAX_ERROR_KINDS:
                    return
                code = self.finish_codes[fr] = len(self.finish_codes) + 1
            cols["finish"][row] = code

    def _done(self, row: int, n: int) -> None:
        self.completed_samples += n
        self._done_rows.append(row)
        self._done_sizes.append(n)

    # ------------------------------------------------------------------ folding
    def waiting(self) -> int:
        """Completed queries not yet folded into the statistics."""
        return len(self._done_rows) - self._done_ptr

    def fold(self) -> None:
        """Fold queries completed since the last fold into :attr:`stats`."""
        lo, hi = self._done_ptr, len(self._done_rows)
        if hi > lo:
            self.stats.fold(self.buf.cols, self._done_rows[lo:hi], self._done_sizes[lo:hi], list(self.error_codes),
                            query_latency=self._query_latency, window=self._window,
                            finish_names=list(self.finish_codes))
            self._done_ptr = hi
        if self._token_gaps:
            self.stats.fold_gaps(self._token_gaps)
            self._token_gaps = []

    def window(self) -> dict[str, int]:
        """Completions since the last call, and their latency p50/p99 and lateness p99 (if any)."""
        self.fold()
        lo, hi = self._snap_ptr, len(self._done_rows)
        self._snap_ptr = hi
        out = {"window_completed": hi - lo}
        lat, late = self._window
        if lat.count:
            out.update(p50_ns=lat.percentile(0.5), p99_ns=lat.percentile(0.99), lateness_p99_ns=late.percentile(0.99))
            self._window = (Histogram(), Histogram())
        return out

    def stats_now(self, samples_issued: int, queries_issued: int) -> RunStats:
        """The statistics so far (every completed query folded in)."""
        self.fold()
        self.stats.samples_issued = samples_issued
        self.stats.queries_issued = queries_issued
        return self.stats

    # ------------------------------------------------------------------ records
    def records(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """The per-sample records so far (with ``token_ns`` / ``token_offsets``, see
        :mod:`raybench.core.records`) and the error reasons their codes refer to."""
        cols = self.buf.freeze()
        rows = np.frombuffer(self._tok_rows, dtype=np.int64) if self._tok_rows else np.zeros(0, np.int64)
        n = np.frombuffer(self._tok_counts, dtype=np.int64) if self._tok_counts else np.zeros(0, np.int64)
        flat = np.frombuffer(self._tok_flat, dtype=np.int64) if self._tok_flat else np.zeros(0, np.int64)
        counts = np.zeros(self.buf.size, dtype=np.int64)
        counts[rows] = n
        cols["token_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Each row's run of chunk times, moved from completion order to row order.
        order = np.argsort(rows, kind="stable")
        starts = np.cumsum(n) - n
        take = np.repeat(starts[order] - (np.cumsum(n[order]) - n[order]), n[order]) + np.arange(int(n.sum()))
        cols["token_ns"] = flat[take] - self._t0
        return cols, list(self.error_codes)

    def write_records(self, path: str) -> str:
        """Write the records to ``path``; if that directory is not on this host, to its temp dir."""
        cols, errors = self.records()
        finish = list(self.finish_codes)
        try:
            return str(write_records_file(path, cols, errors, finish))
        except OSError:
            local = os.path.join(tempfile.gettempdir(), "raybench-records", os.path.basename(os.path.dirname(path)),
                                 os.path.basename(path))
            return str(write_records_file(local, cols, errors, finish))

    def fill(self, report: Any) -> None:
        """Put the error reasons, the accuracy entries and the records (as asked) into the report."""
        report.errors = list(self.error_codes)
        report.finish_reasons = list(self.finish_codes)
        report.accuracy = self.accuracy
        if self.keep_records:
            report.records = self.records()[0]
        if self.records_path:
            report.records_file = self.write_records(self.records_path)
