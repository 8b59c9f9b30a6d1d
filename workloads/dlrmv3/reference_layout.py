"""The MLPerf reference's DLRMv3 dataset files: a streaming reader and a writer.

The reference generator (``recommendation/dlrm_v3/streaming_synthetic_data.py``) and its
dataset class (``datasets/synthetic_streaming.py``) use these files, all CSV written by
Python's ``csv.writer`` (``\\r\\n`` line ends; a field holding commas is double-quoted):

* ``{f}.csv``: one line per user of file ``f`` (users ``f * users_per_file ..``), ``4 * (T + 2)``
  fields: per slot, candidate item ids, candidate ratings, UIH item ids, UIH ratings (each a
  comma-joined list; all four empty when the user is inactive at that slot). Slot (column group)
  ``0`` is the base history (``t = -1``), ``1 .. train_ts`` the train timestamps ``0 ..
  train_ts - 1``, ``train_ts + 1`` the eval slot, ``train_ts + 2 ..`` the inference timestamps
  ``train_ts .. T - 1``;
* ``offset.csv``: one line per file, one field: the byte offset of every user's line;
* ``ts_{f}_{t}.csv``: the users of file ``f`` active at timestamp ``t`` (train or inference;
  never the eval slot), one per line (written only when there is one);
* ``requests_per_ts.csv``: one line per timestamp, one field: the active users of all files,
  in file order (ascending user id);
* ``requests_per_ts_offset.csv``: one line, one field: the byte offset of each line above;
* ``users_cumsum_per_ts.csv``: one line per timestamp, one field: per file, the running total of
  the active users (its last value is the number of requests at that timestamp).

The benchmark ships ``sampled_data/`` (``0.csv`` and the four metadata files of the full set).

Reading (:class:`ReferenceData`) never loads the per-user files: a request of user ``u`` seeks to
``offset[u // upf][u % upf]`` in ``{u // upf}.csv`` and parses that one line, as the reference's
``iloc`` does. The history of a request follows the reference's ``_process_line``:

* train request at ``t < train_ts``: slots ``0 .. t`` (base and the train timestamps before
  ``t``); candidates: slot ``t + 1``;
* eval request: slots ``0 .. train_ts``; candidates: the eval slot;
* inference request at ``train_ts <= t < T``: slots ``0 .. train_ts`` and the inference slots
  before ``t`` (the eval slot is never history); candidates: slot ``t + 2``;

always only the slots whose candidate field is not empty. A sample is the same dict the
generated (npz) layout gives (``user``, ``ts``, ``uih_ids`` int64, ``uih_ratings`` float32,
``uih_ts`` int16 slot timestamps, ``cand_ids`` int64, ``labels`` float32 ``rating >= 3.5``
computed on the ratings as written, before the float32 cast). The reference itself feeds the
model ``1`` for every UIH timestamp; the slot timestamps are what our model reads.

Every malformed or truncated file is a one-line ``ValueError`` naming the file and line.

Writing (:func:`write_layout`) lays out the shards of our generator in these files, so tests
and demos build small datasets in the reference's exact format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workloads.dlrmv3.generator import KIND_BASE, KIND_EVAL, KIND_TRAIN, LABEL_THRESHOLD

__all__ = ["REFERENCE_FILES", "ReferenceData", "ReferenceParams", "write_layout"]

REFERENCE_FILES = ("offset.csv", "requests_per_ts.csv", "requests_per_ts_offset.csv",
                   "users_cumsum_per_ts.csv")
# sampled-streaming-100b (recommendation/dlrm_v3/utils.py get_dataset): the defaults of the
# values the files do not hold.
REFERENCE_TRAIN_TS = 90
REFERENCE_NUM_ITEMS = 1_000_000_000
REFERENCE_NUM_CATEGORIES = 128


@dataclass(frozen=True)
class ReferenceParams:
    """Sizes of a reference-layout dataset (the attributes a SUT reads from ``data.params``)."""

    num_users: int
    num_items: int
    num_categories: int
    num_timestamps: int
    train_ts: int
    num_files: int
    users_per_file: int

    @property
    def items_per_category(self) -> int:
        return self.num_items // self.num_categories


def _err(path: Path, line: int | None, msg: str) -> ValueError:
    where = f"{path}:{line}" if line is not None else str(path)
    return ValueError(f"dlrmv3: {where}: {msg}")


def _decode(raw: bytes, path: Path, line: int) -> list[str]:
    """The CSV fields of one raw line (which must end with a line break)."""
    if not raw.endswith(b"\n"):
        raise _err(path, line, "truncated line (no line end)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _err(path, line, f"non-ASCII byte at column {exc.start + 1}") from None
    try:
        return next(csv.reader([text.rstrip("\r\n")], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise _err(path, line, f"not a CSV line ({exc})") from None


def _ints(field: str, path: Path, line: int, what: str) -> np.ndarray:
    if not field:
        return np.zeros(0, np.int64)
    toks = field.split(",")
    try:
        return np.array(toks, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(t for t in toks if not _is_int(t))
        raise _err(path, line, f"{what}: non-integer value {bad!r}") from None


def _floats(field: str, path: Path, line: int, what: str) -> np.ndarray:
    if not field:
        return np.zeros(0, np.float64)
    toks = field.split(",")
    try:
        out = np.array(toks, dtype=np.float64)
    except ValueError:
        bad = next(t for t in toks if not _is_float(t))
        raise _err(path, line, f"{what}: non-numeric value {bad!r}") from None
    if not np.isfinite(out).all():
        raise _err(path, line, f"{what}: non-finite value")
    return out


def _is_int(tok: str) -> bool:
    try:
        int(tok)
    except ValueError:
        return False
    return True


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _one_field(raw: bytes, path: Path, line: int) -> str:
    fields = _decode(raw, path, line)
    if len(fields) != 1:
        raise _err(path, line, f"{len(fields)} fields, expected 1 (a quoted comma-separated list)")
    return fields[0]


def _lines(path: Path) -> Iterable[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        yield from enumerate(fh, start=1)


def _check_offsets(offs: np.ndarray, size: int, path: Path, line: int, target: Path) -> None:
    if offs.size and offs[0] != 0:
        raise _err(path, line, f"first offset is {int(offs[0])}, expected 0")
    bad = np.flatnonzero(np.diff(offs) <= 0)
    if bad.size:
        raise _err(path, line, f"offsets not increasing at entry {int(bad[0]) + 2}")
    if offs.size and offs[-1] >= size:
        raise _err(path, line, f"offset {int(offs[-1])} (entry {offs.size}) is past the end of "
                               f"{target} ({size} bytes)")


class ReferenceData:
    """A directory in the reference layout (e.g. the benchmark's ``sampled_data/``).

    Args:
        data_dir: the directory holding ``offset.csv`` and the other metadata files.
        train_ts: number of train timestamps (``None``: our generator's ``meta.json`` when the
            directory has one, else the reference's 90).
        num_items, num_categories: the item catalogue (same defaults: meta.json, else 1e9 / 128).

    Attributes:
        params: :class:`ReferenceParams`.
        data_dir: the directory.

    Raises:
        ValueError: a missing or malformed file, one line naming the file (and line).

    Example:
        >>> data = ReferenceData("/data/dlrmv3/sampled_data")          # doctest: +SKIP
        >>> users = data.requests(95)[:10]                              # doctest: +SKIP
        >>> data.example(int(users[0]), 95)["cand_ids"].size            # doctest: +SKIP
        2048
    """

    def __init__(self, data_dir: str | Path, *, train_ts: int | None = None,
                 num_items: int | None = None, num_categories: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise ValueError(f"dlrmv3: reference dataset directory {self.data_dir} does not exist")
        for name in REFERENCE_FILES:
            if not (self.data_dir / name).is_file():
                raise ValueError(f"dlrmv3: missing reference file {self.data_dir / name}")
        meta = self._meta()
        # requests_per_ts_offset.csv: one line, the byte offset of each timestamp's line.
        path = self.data_dir / "requests_per_ts_offset.csv"
        rows = list(_lines(path))
        if len(rows) != 1:
            raise _err(path, None, f"{len(rows)} lines, expected 1")
        self._ts_offsets = _ints(_one_field(rows[0][1], path, 1), path, 1, "offset")
        req_path = self.data_dir / "requests_per_ts.csv"
        _check_offsets(self._ts_offsets, req_path.stat().st_size, path, 1, req_path)
        n_ts = int(self._ts_offsets.size)
        if n_ts < 2:
            raise _err(path, 1, f"{n_ts} timestamps, expected at least 2")
        # users_cumsum_per_ts.csv: one line per timestamp, per file the running request count.
        path = self.data_dir / "users_cumsum_per_ts.csv"
        self._cumsum: list[np.ndarray] = []
        for line, raw in _lines(path):
            c = _ints(_one_field(raw, path, line), path, line, "count")
            if c.size == 0 or (np.diff(c) < 0).any() or c[0] < 0:
                raise _err(path, line, "expected a non-empty, non-decreasing list of counts")
            self._cumsum.append(c)
        if len(self._cumsum) != n_ts:
            raise _err(path, None, f"{len(self._cumsum)} lines, but requests_per_ts_offset.csv has "
                                   f"{n_ts} timestamps")
        # offset.csv: one line per file; only the files present here are parsed.
        path = self.data_dir / "offset.csv"
        self._user_offsets: dict[int, np.ndarray] = {}
        upf = None
        n_files = 0
        for line, raw in _lines(path):
            f = line - 1
            n_files = line
            target = self.data_dir / f"{f}.csv"
            if target.is_file():
                offs = _ints(_one_field(raw, path, line), path, line, "offset")
                _check_offsets(offs, target.stat().st_size, path, line, target)
                self._user_offsets[f] = offs
                n = int(offs.size)
            else:
                if not raw.endswith(b"\n"):
                    raise _err(path, line, "truncated line (no line end)")
                n = raw.count(b",") + 1
            if upf is None:
                if n < 1:
                    raise _err(path, line, "no user offsets")
                upf = n
            elif n != upf:
                raise _err(path, line, f"{n} users, but line 1 has {upf} (files hold equal user counts)")
        if not self._user_offsets:
            raise ValueError(f"dlrmv3: no per-user file (0.csv ..) in {self.data_dir}")
        assert upf is not None
        bad = [k for k, c in enumerate(self._cumsum) if c.size != n_files]
        if bad:
            raise _err(self.data_dir / "users_cumsum_per_ts.csv", bad[0] + 1,
                       f"{self._cumsum[bad[0]].size} counts, but offset.csv has {n_files} files")
        tr = train_ts if train_ts is not None else int(meta.get("train_ts", REFERENCE_TRAIN_TS))
        if not 0 < tr < n_ts:
            raise ValueError(f"dlrmv3: train_ts={tr} must be in 1..{n_ts - 1} "
                             f"({n_ts} timestamps in {self.data_dir})")
        self.params = ReferenceParams(
            num_users=upf * n_files,
            num_items=int(num_items if num_items is not None else meta.get("num_items", REFERENCE_NUM_ITEMS)),
            num_categories=int(num_categories if num_categories is not None
                               else meta.get("num_categories", REFERENCE_NUM_CATEGORIES)),
            num_timestamps=n_ts, train_ts=tr, num_files=n_files, users_per_file=upf)
        if self.params.items_per_category < 1:
            raise ValueError(f"dlrmv3: num_items={self.params.num_items} < num_categories="
                             f"{self.params.num_categories}")

    def _meta(self) -> dict[str, Any]:
        """Defaults written by our generator (``meta.json``), if the directory has one."""
        path = self.data_dir / "meta.json"
        if not path.is_file():
            return {}
        try:
            params = json.loads(path.read_text())["params"]
            return {"train_ts": int(params["num_timestamps"] * params["train_ratio"]),
                    "num_items": int(params["num_items"]), "num_categories": int(params["num_categories"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"dlrmv3: bad dataset metadata {path}: {exc}") from exc

    # ------------------------------------------------------------------ timestamps
    def request_count(self, t: int) -> int:
        """Requests (active users of every file) at timestamp ``t``."""
        return int(self._cumsum[t][-1])

    def requests(self, t: int, n: int | None = None) -> np.ndarray:
        """User ids active at timestamp ``t`` (its line of ``requests_per_ts.csv``, read by seek).

        Args:
            n: parse only the first ``n`` (the full set has ~3.5 M per timestamp); the line's
                count is still checked against ``users_cumsum_per_ts.csv``.
        """
        if not 0 <= t < self.params.num_timestamps:
            raise IndexError(f"dlrmv3: timestamp {t} out of range 0..{self.params.num_timestamps - 1}")
        path = self.data_dir / "requests_per_ts.csv"
        off = int(self._ts_offsets[t])
        with open(path, "rb") as fh:
            if off > 0:
                fh.seek(off - 1)
                if fh.read(1) != b"\n":
                    raise _err(self.data_dir / "requests_per_ts_offset.csv", 1,
                               f"offset {off} (entry {t + 1}) does not start a line of {path}")
            raw = fh.readline()
        field = _one_field(raw, path, t + 1)
        count = field.count(",") + 1 if field else 0
        if count != self.request_count(t):
            raise _err(path, t + 1, f"{count} users, but users_cumsum_per_ts.csv:{t + 1} "
                                    f"counts {self.request_count(t)}")
        if n is not None and n < count:
            field = ",".join(field.split(",", n)[:n])
        users = _ints(field, path, t + 1, "user id")
        if users.size and (users.min() < 0 or users.max() >= self.params.num_users):
            raise _err(path, t + 1, f"user id out of range 0..{self.params.num_users - 1}")
        if (np.diff(users) <= 0).any():
            raise _err(path, t + 1, "user ids not increasing (expected file order, ascending)")
        return users

    def file_of(self, user: int) -> int:
        return int(user) // self.params.users_per_file

    def has_user(self, user: int) -> bool:
        """Whether the per-user file holding ``user`` is in this directory."""
        return self.file_of(user) in self._user_offsets

    # ------------------------------------------------------------------ one user's line
    def _user_fields(self, user: int) -> tuple[list[str], Path, int]:
        f, i = self.file_of(user), int(user) % self.params.users_per_file
        path = self.data_dir / f"{f}.csv"
        offs = self._user_offsets.get(f)
        if offs is None:
            raise ValueError(f"dlrmv3: user {user} is in {path}, which is missing")
        off = int(offs[i])
        try:
            with open(path, "rb") as fh:
                if off > 0:
                    fh.seek(off - 1)
                    if fh.read(1) != b"\n":
                        raise _err(self.data_dir / "offset.csv", f + 1,
                                   f"offset {off} of user {user} does not start a line of {path}")
                raw = fh.readline()
        except OSError as exc:
            raise ValueError(f"dlrmv3: cannot read {path}: {exc}") from exc
        fields = _decode(raw, path, i + 1)
        want = 4 * (self.params.num_timestamps + 2)
        if len(fields) != want:
            raise _err(path, i + 1, f"{len(fields)} columns, expected {want} (4 per slot: "
                                    f"{self.params.num_timestamps} timestamps + base + eval)")
        return fields, path, i + 1

    def _slot_ts(self, col: int) -> int:
        tr = self.params.train_ts
        if col == 0:
            return -1
        if col <= tr + 1:
            return col - 1          # train timestamps 0..tr-1, and the eval slot at tr
        return col - 2

    def example(self, user: int, t: int, split: str = "inference") -> dict[str, Any]:
        """Model inputs and labels of ``user``'s request (see the module doc for the history).

        Args:
            user: user id.
            t: timestamp (ignored for ``eval``: the eval slot is at ``train_ts``).
            split: ``train`` (``t < train_ts``), ``eval`` or ``inference`` (``train_ts <= t < T``).
        """
        p = self.params
        tr, n_ts = p.train_ts, p.num_timestamps
        if split == "train" and 0 <= t < tr:
            hist, cand = list(range(t + 1)), t + 1
        elif split == "eval":
            t = tr
            hist, cand = list(range(tr + 1)), tr + 1
        elif split == "inference" and tr <= t < n_ts:
            hist, cand = list(range(tr + 1)) + list(range(tr + 2, t + 2)), t + 2
        else:
            raise ValueError(f"dlrmv3: no {split!r} request at timestamp {t} "
                             f"(train 0..{tr - 1}, eval {tr}, inference {tr}..{n_ts - 1})")
        fields, path, line = self._user_fields(user)
        ids, ratings, ts = [], [], []
        for c in hist:
            if not fields[4 * c]:
                continue
            i = _ints(fields[4 * c + 2], path, line, f"column {4 * c + 3} (UIH item ids)")
            r = _floats(fields[4 * c + 3], path, line, f"column {4 * c + 4} (UIH ratings)")
            if i.size != r.size:
                raise _err(path, line, f"slot {c}: {i.size} UIH item ids but {r.size} ratings")
            ids.append(i)
            ratings.append(r)
            ts.append(np.full(i.size, self._slot_ts(c), np.int16))
        if not fields[4 * cand]:
            raise _err(path, line, f"user {user} has no candidates at timestamp {t} "
                                   f"(column {4 * cand + 1} is empty)")
        cid = _ints(fields[4 * cand], path, line, f"column {4 * cand + 1} (candidate item ids)")
        crat = _floats(fields[4 * cand + 1], path, line, f"column {4 * cand + 2} (candidate ratings)")
        if cid.size != crat.size:
            raise _err(path, line, f"slot {cand}: {cid.size} candidate ids but {crat.size} ratings")
        return {
            "user": int(user), "ts": int(t),
            "uih_ids": np.concatenate(ids) if ids else np.zeros(0, np.int64),
            "uih_ratings": (np.concatenate(ratings) if ratings else np.zeros(0)).astype(np.float32),
            "uih_ts": np.concatenate(ts) if ts else np.zeros(0, np.int16),
            "cand_ids": cid,
            "labels": (crat >= LABEL_THRESHOLD).astype(np.float32),
        }

    # ------------------------------------------------------------------ library protocol
    def inference_requests(self, t: int, n: int) -> np.ndarray:
        """The first ``n`` requests at inference timestamp ``t``, as user ids (ascending)."""
        users = self.requests(t, n)
        ok = np.isin(users // self.params.users_per_file, list(self._user_offsets))
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            u = int(users[k])
            raise ValueError(f"dlrmv3: request {k} of timestamp {t} is user {u}, whose file "
                             f"{self.data_dir / f'{self.file_of(u)}.csv'} is missing (lower "
                             f"dataset_percentage to keep at most {k} requests per timestamp)")
        return users

    def request(self, t: int, handle: int) -> dict[str, Any]:
        return self.example(int(handle), t, "inference")


# ---------------------------------------------------------------------- writer
def _row(fields: Sequence[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(fields)
    return buf.getvalue().encode("ascii")


def _join_ints(a: np.ndarray) -> str:
    return ",".join(map(str, a.tolist()))


def _join_floats(a: np.ndarray) -> str:
    # repr of the float64 value: reads back to exactly the same number (and float32 value).
    return ",".join(map(repr, np.asarray(a, np.float64).tolist()))


def _column(kind: int, t: int, train_ts: int) -> int:
    if kind == KIND_BASE:
        return 0
    if kind == KIND_TRAIN:
        return t + 1
    if kind == KIND_EVAL:
        return train_ts + 1
    return t + 2


def write_layout(params: Any, shards: Iterable[tuple[int, dict[str, np.ndarray]]], out: str | Path) -> None:
    """Write generated shards (``generator.generate_shard`` arrays) as the reference's files.

    Shard ``s`` becomes ``{s}.csv`` (its users in id order) and ``ts_{s}_{t}.csv``; after the
    last shard the metadata files are written. Every shard must hold
    ``num_users // num_shards`` users (the reference assumes equal files).

    Args:
        params: the ``GeneratorParams`` of the shards.
        shards: ``(shard index, arrays)`` in shard order, every shard once.
        out: an existing directory.
    """
    out = Path(out)
    n_ts, tr = params.num_timestamps, params.train_ts
    per = params.num_users // params.num_shards
    if per * params.num_shards != params.num_users:
        raise ValueError(f"dlrmv3: num_users={params.num_users} must be a multiple of num_shards="
                         f"{params.num_shards} for the reference layout (equal files)")
    width = 4 * (n_ts + 2)
    offset_rows: list[bytes] = []
    active: list[list[np.ndarray]] = [[] for _ in range(n_ts)]
    for expect, (s, a) in enumerate(shards):
        if s != expect:
            raise ValueError(f"dlrmv3: shards must come in order 0..; got {s} at position {expect}")
        users = a["user_ids"]
        if users.size != per:
            raise ValueError(f"dlrmv3: shard {s} has {users.size} users, expected {per}")
        rows: list[list[str]] = [[""] * width for _ in range(users.size)]
        for k in range(a["slot_user"].size):
            u, t, kind = int(a["slot_user"][k]), int(a["slot_t"][k]), int(a["slot_kind"][k])
            c = _column(kind, t, tr)
            ca, cb = a["cand_offsets"][k], a["cand_offsets"][k + 1]
            ua, ub = a["uih_offsets"][k], a["uih_offsets"][k + 1]
            rows[u][4 * c:4 * c + 4] = [_join_ints(a["cand_ids"][ca:cb]), _join_floats(a["cand_ratings"][ca:cb]),
                                        _join_ints(a["uih_ids"][ua:ub]), _join_floats(a["uih_ratings"][ua:ub])]
        offsets, pos = [], 0
        with open(out / f"{s}.csv", "wb") as fh:
            for r in rows:
                line = _row(r)
                offsets.append(pos)
                pos += len(line)
                fh.write(line)
        offset_rows.append(_row([",".join(map(str, offsets))]))
        on_ts = (a["slot_t"] >= 0) & (a["slot_kind"] != KIND_EVAL)
        for t in range(n_ts):
            uids = users[a["slot_user"][on_ts & (a["slot_t"] == t)]]
            active[t].append(uids)
            if uids.size:
                (out / f"ts_{s}_{t}.csv").write_bytes(b"".join(_row([str(x)]) for x in uids.tolist()))
    if len(offset_rows) != params.num_shards:
        raise ValueError(f"dlrmv3: got {len(offset_rows)} shards, expected {params.num_shards}")
    (out / "offset.csv").write_bytes(b"".join(offset_rows))
    req_rows, cum_rows = [], []
    for t in range(n_ts):
        req_rows.append(_row([_join_ints(np.concatenate(active[t]))]))
        cum_rows.append(_row([_join_ints(np.cumsum([x.size for x in active[t]]))]))
    (out / "requests_per_ts.csv").write_bytes(b"".join(req_rows))
    (out / "users_cumsum_per_ts.csv").write_bytes(b"".join(cum_rows))
    starts = np.concatenate([[0], np.cumsum([len(r) for r in req_rows])[:-1]])
    (out / "requests_per_ts_offset.csv").write_bytes(_row([_join_ints(starts)]))
