"""DLRMv3 sample library: one sample = one inference request (user, timestamp).

A request of user ``u`` at inference timestamp ``t`` carries

* the user interaction history (UIH): the base slot, every train slot and the inference slots
  ``< t`` of that user, in time order (the eval slot is not part of any history, as in the
  reference's ``_process_line``), as item ids, ratings and slot timestamps;
* the candidate item ids of slot ``t`` and their labels ``rating >= 3.5``.

Streaming order: sample index ``i`` is the position in the execution order the reference
uses, timestamp-major (``train_ts .. num_timestamps-1``) and, within a timestamp, one seeded
shuffle (``numpy.random.default_rng([order_seed, ts_idx]).permutation``). ``query_idx`` is
the request's rank by user id within its timestamp; ``(ts_idx, query_idx)`` is what the SUT
writes into the accuracy payload.

Two on-disk layouts give the same samples: ``npz`` (our generator's shards, :class:`DLRMv3Data`)
and ``reference`` (the MLPerf reference's CSV files, e.g. the benchmark's ``sampled_data/``,
:class:`~workloads.dlrmv3.reference_layout.ReferenceData`, read one user line at a time).
``dataset_percentage`` keeps the first ``int(count * p)`` requests (by user id) of each
timestamp, as the reference's ``--dataset-percentage``; ``order: reference`` shuffles each
timestamp's requests with Python's ``random.Random(order_seed).shuffle``, one timestamp after
the other, which is the reference's ``StreamingQuerySampler`` execution order (``random.seed
(numpy_rand_seed)``, then ``random.shuffle`` per timestamp).

Issue order: the library decides what is issued (:meth:`DLRMv3Library.issue_order`, one epoch
of the reference ``StreamingQuerySampler``: timestamp by timestamp, each timestamp's requests
``repeats`` times). The plan issues it (performance runs cyclically, accuracy runs every
request once in streaming order); the SUT serves the samples each query carries and only gates
them by timestamp (``reference_suts/dlrmv3_hstu/scheduler.py``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.cache import cache_root
from workloads.dlrmv3.generator import (
    KIND_EVAL,
    KIND_INFER,
    LABEL_THRESHOLD,
    GeneratorParams,
    generate,
    preset,
    read_meta,
)

__all__ = ["DLRMv3Data", "DLRMv3Library", "load_library", "demo_dir", "DEMO_VERSION"]

DEMO_VERSION = 1


class DLRMv3Data:
    """The generated arrays of one or more shards, with per-user UIH streams precomputed.

    ``stream_*`` is, per user, the concatenation of that user's UIH slots except the eval slot,
    so the history of any slot ``s`` is the contiguous range
    ``stream[user_start[slot_user[s]] : slot_start[s]]``.
    """

    def __init__(self, data_dir: str | Path, shards: Sequence[int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.params: GeneratorParams = read_meta(self.data_dir)
        shard_list = range(self.params.num_shards) if shards is None else shards
        parts = []
        for s in shard_list:
            path = self.data_dir / f"part-{int(s):05d}.npz"
            if not path.exists():
                raise ValueError(f"dlrmv3: missing dataset shard {path}")
            with np.load(path) as z:
                parts.append({k: z[k] for k in z.files})
        self._merge(parts)

    def _merge(self, parts: list[dict[str, np.ndarray]]) -> None:
        users, ubase, sbase = [], 0, 0
        cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "slot_user", "slot_t", "slot_kind", "uih_ids", "uih_ratings", "cand_ids", "cand_ratings")}
        uih_len, cand_len = [], []
        for p in parts:
            users.append(p["user_ids"])
            cols["slot_user"].append(p["slot_user"].astype(np.int64) + ubase)
            for k in ("slot_t", "slot_kind", "uih_ids", "uih_ratings", "cand_ids", "cand_ratings"):
                cols[k].append(p[k])
            uih_len.append(np.diff(p["uih_offsets"]))
            cand_len.append(np.diff(p["cand_offsets"]))
            ubase += p["user_ids"].size
            sbase += p["slot_user"].size
        self.user_ids = np.concatenate(users)
        self.slot_user = np.concatenate(cols["slot_user"])
        self.slot_t = np.concatenate(cols["slot_t"]).astype(np.int64)
        self.slot_kind = np.concatenate(cols["slot_kind"])
        ulen = np.concatenate(uih_len)
        clen = np.concatenate(cand_len)
        self.cand_offsets = np.concatenate([[0], np.cumsum(clen)])
        self.cand_ids = np.concatenate(cols["cand_ids"])
        self.cand_ratings = np.concatenate(cols["cand_ratings"])
        # UIH stream: drop eval-slot tokens, keep the rest in slot order.
        keep_slot = self.slot_kind != KIND_EVAL
        tok_keep = np.repeat(keep_slot, ulen)
        self.stream_ids = np.concatenate(cols["uih_ids"])[tok_keep]
        self.stream_ratings = np.concatenate(cols["uih_ratings"])[tok_keep]
        self.stream_ts = np.repeat(self.slot_t, ulen)[tok_keep].astype(np.int16)
        kept = np.where(keep_slot, ulen, 0)
        self.slot_start = np.concatenate([[0], np.cumsum(kept)])[:-1]
        first_slot = np.searchsorted(self.slot_user, np.arange(self.user_ids.size), side="left")
        self.user_start = self.slot_start[first_slot]

    # ------------------------------------------------------------------ slots -> examples
    def slots_of(self, kind: int, t: int | None = None) -> np.ndarray:
        """Slot numbers of one kind (and timestamp), in user order."""
        mask = self.slot_kind == kind
        if t is not None:
            mask &= self.slot_t == t
        return np.flatnonzero(mask)

    def history(self, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, ratings, timestamps) of the UIH visible to a request at ``slot``."""
        a, b = self.user_start[self.slot_user[slot]], self.slot_start[slot]
        return self.stream_ids[a:b], self.stream_ratings[a:b], self.stream_ts[a:b]

    def request_count(self, t: int) -> int:
        """Inference requests at timestamp ``t``."""
        return int(self.slots_of(KIND_INFER, t).size)

    def inference_requests(self, t: int, n: int) -> np.ndarray:
        """The first ``n`` inference requests at ``t`` (slot numbers, in user order)."""
        return self.slots_of(KIND_INFER, t)[:n]

    def request(self, t: int, handle: int) -> dict[str, Any]:
        """The sample of an inference request (``handle`` from :meth:`inference_requests`)."""
        return self.example(int(handle))

    def example(self, slot: int) -> dict[str, Any]:
        """Model inputs and labels of one slot (train or inference)."""
        ids, ratings, ts = self.history(slot)
        a, b = self.cand_offsets[slot], self.cand_offsets[slot + 1]
        return {
            "user": int(self.user_ids[self.slot_user[slot]]),
            "ts": int(self.slot_t[slot]),
            "uih_ids": ids, "uih_ratings": ratings, "uih_ts": ts,
            "cand_ids": self.cand_ids[a:b],
            "labels": (self.cand_ratings[a:b] >= LABEL_THRESHOLD).astype(np.float32),
        }


class DLRMv3Library:
    """The inference requests of a generated dataset, in streaming execution order.

    Attributes:
        counts_per_ts: requests per inference timestamp, in order (the scheduler's quotas).
        ts_offsets: index of the first request of each timestamp (length ``n_ts + 1``).
        repeats: times each timestamp's requests are issued before the next (reference
            ``num_repeats``), see :meth:`issue_order`.
    """

    name = "dlrmv3"

    def __init__(self, data: Any, *, order_seed: int = 123, max_requests_per_ts: int | None = None,
                 repeats: int = 1, dataset_percentage: float = 1.0, order: str = "numpy") -> None:
        if int(repeats) < 1:
            raise ValueError(f"dlrmv3: repeats must be >= 1, got {repeats}")
        if order not in ("numpy", "reference"):
            raise ValueError(f"dlrmv3: order must be 'numpy' or 'reference', got {order!r}")
        self.data = data
        self.repeats = int(repeats)
        p = data.params
        self.train_ts = p.train_ts
        handles: list[np.ndarray] = []
        qidx: list[np.ndarray] = []
        tsi: list[np.ndarray] = []
        shuffler = random.Random(order_seed) if order == "reference" else None
        for ts_idx, t in enumerate(range(p.train_ts, p.num_timestamps)):
            n = int(data.request_count(t) * dataset_percentage)
            reqs = data.inference_requests(t, n)
            if shuffler is not None:
                within = list(range(n))
                shuffler.shuffle(within)
                perm = np.array(within, dtype=np.int64)
            else:
                perm = np.random.default_rng([order_seed, ts_idx]).permutation(n)
            if max_requests_per_ts is not None:
                perm = perm[:max_requests_per_ts]
            handles.append(reqs[perm])
            qidx.append(perm)
            tsi.append(np.full(perm.size, ts_idx))
        self._handles = np.concatenate(handles).astype(np.int64)
        self._query_idx = np.concatenate(qidx)
        self._ts_idx = np.concatenate(tsi)
        self.counts_per_ts = [int(o.size) for o in handles]
        self.ts_offsets = np.concatenate([[0], np.cumsum(self.counts_per_ts)]).astype(np.int64)
        self._by_key = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(self._ts_idx, self._query_idx, strict=True))}
        self._loaded: dict[int, dict[str, Any]] = {}

    @property
    def total_count(self) -> int:
        return int(self._handles.size)

    @property
    def performance_count(self) -> int:
        return self.total_count

    def issue_order(self) -> np.ndarray:
        """One epoch of the streaming order, as library indices (what the plan issues).

        For each inference timestamp ``t`` in order, ``repeats * counts[t]`` slots whose
        ``j``-th serves ``ts_offsets[t] + j % counts[t]`` (reference ``StreamingQuerySampler``
        with ``num_repeats``). Every index appears ``repeats`` times; with ``repeats == 1`` it is
        ``arange(total_count)``.
        """
        parts = [self.ts_offsets[t] + np.arange(self.repeats * c, dtype=np.int64) % c
                 for t, c in enumerate(self.counts_per_ts) if c]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def load(self, indices: Sequence[int]) -> None:
        for i in indices:
            if int(i) not in self._loaded:
                self._loaded[int(i)] = self._build(int(i))

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(int(i), None)

    def get(self, index: int) -> dict[str, Any]:
        """The request at streaming position ``index`` (built on demand if not loaded)."""
        got = self._loaded.get(int(index))
        return got if got is not None else self._build(int(index))

    def key(self, index: int) -> tuple[int, int]:
        """``(ts_idx, query_idx)`` of a sample."""
        return int(self._ts_idx[index]), int(self._query_idx[index])

    def index_of(self, ts_idx: int, query_idx: int) -> int | None:
        """Inverse of :meth:`key` (``None`` when not in this library)."""
        return self._by_key.get((int(ts_idx), int(query_idx)))

    def _build(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.total_count:
            raise IndexError(f"dlrmv3: sample index {index} out of range 0..{self.total_count - 1}")
        ex = self.data.request(self.train_ts + int(self._ts_idx[index]), int(self._handles[index]))
        ex["index"] = index
        ex["ts_idx"], ex["query_idx"] = self.key(index)
        return ex


def demo_dir(preset_name: str = "tiny", seed: int | None = None) -> Path:
    """Cache directory of the generated demo dataset for a preset."""
    root = cache_root()
    suffix = "" if seed is None else f"-s{seed}"
    return root / f"dlrmv3-demo-{DEMO_VERSION}-{preset_name}{suffix}"


def load_library(params: dict[str, Any]) -> DLRMv3Library:
    """Build the library from workload params.

    Params:
        layout: ``npz`` (our generator's shards) or ``reference`` (the MLPerf reference's CSV
            files in ``data_dir``, e.g. the benchmark's ``sampled_data/``).
        data_dir: the dataset; with layout ``npz`` and no ``data_dir``, the ``preset`` (``tiny``
            or ``small``) is generated deterministically into the cache on first use.
        preset, seed: which demo dataset to generate.
        shards: load only these shards (layout ``npz``; e.g. ``[0]``).
        train_ts, num_items, num_categories: layout ``reference`` only; what the files do not
            say (default: the directory's ``meta.json`` from our generator, else the reference's
            90, 1e9, 128).
        order: ``numpy`` (default for ``npz``) or ``reference`` (default for ``reference``).
        order_seed: seed of the within-timestamp shuffle (reference default 123).
        dataset_percentage: keep the first ``int(count * p)`` requests of each timestamp.
        max_requests_per_ts: keep only the first N requests of each timestamp's order.
        repeats: times each timestamp is issued before the next (:meth:`DLRMv3Library.issue_order`).
    """
    layout = params.get("layout", "npz")
    data_dir = params.get("data_dir")
    if layout == "reference":
        from workloads.dlrmv3.reference_layout import ReferenceData

        if not data_dir:
            raise ValueError("dlrmv3: layout 'reference' needs workload.params.data_dir "
                             "(the directory holding offset.csv, e.g. sampled_data/)")
        data: Any = ReferenceData(data_dir, train_ts=params.get("train_ts"),
                                  num_items=params.get("num_items"),
                                  num_categories=params.get("num_categories"))
    else:
        if not data_dir:
            name = params.get("preset", "tiny")
            if name not in ("tiny", "small"):
                raise ValueError(f"dlrmv3: preset {name!r} cannot be auto-generated; set data_dir")
            seed = params.get("seed")
            gp = preset(name, **({} if seed is None else {"seed": int(seed)}))
            data_dir = demo_dir(name, seed)
            if not (data_dir / "meta.json").exists():
                generate(gp, data_dir)
        elif not Path(data_dir).is_dir():
            raise ValueError(f"dlrmv3: data_dir {data_dir} does not exist")
        elif (Path(data_dir) / "offset.csv").exists() and not (Path(data_dir) / "part-00000.npz").exists():
            raise ValueError(f"dlrmv3: {data_dir} is in the reference layout; set "
                             f"workload.params.layout=reference")
        data = DLRMv3Data(data_dir, params.get("shards"))
    mr = params.get("max_requests_per_ts")
    order = params.get("order") or ("reference" if layout == "reference" else "numpy")
    return DLRMv3Library(data, order_seed=int(params.get("order_seed", 123)),
                         max_requests_per_ts=None if mr is None else int(mr),
                         repeats=int(params.get("repeats", 1)),
                         dataset_percentage=float(params.get("dataset_percentage", 1.0)), order=order)
