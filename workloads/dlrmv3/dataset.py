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

Issue order: the library decides what is issued (:meth:`DLRMv3Library.issue_order`, one epoch
of the reference ``StreamingQuerySampler``: timestamp by timestamp, each timestamp's requests
``repeats`` times). The plan issues it (performance runs cyclically, accuracy runs every
request once in streaming order); the SUT serves the samples each query carries and only gates
them by timestamp (``reference_suts/dlrmv3_hstu/scheduler.py``).
"""

from __future__ import annotations

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

    def __init__(self, data: DLRMv3Data, *, order_seed: int = 123,
                 max_requests_per_ts: int | None = None, repeats: int = 1) -> None:
        if int(repeats) < 1:
            raise ValueError(f"dlrmv3: repeats must be >= 1, got {repeats}")
        self.data = data
        self.repeats = int(repeats)
        p = data.params
        self.train_ts = p.train_ts
        order: list[np.ndarray] = []
        qidx: list[np.ndarray] = []
        tsi: list[np.ndarray] = []
        for ts_idx, t in enumerate(range(p.train_ts, p.num_timestamps)):
            slots = data.slots_of(KIND_INFER, t)
            perm = np.random.default_rng([order_seed, ts_idx]).permutation(slots.size)
            if max_requests_per_ts is not None:
                perm = perm[:max_requests_per_ts]
            order.append(slots[perm])
            qidx.append(perm)
            tsi.append(np.full(perm.size, ts_idx))
        self._slots = np.concatenate(order)
        self._query_idx = np.concatenate(qidx)
        self._ts_idx = np.concatenate(tsi)
        self.counts_per_ts = [int(o.size) for o in order]
        self.ts_offsets = np.concatenate([[0], np.cumsum(self.counts_per_ts)]).astype(np.int64)
        self._by_key = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(self._ts_idx, self._query_idx, strict=True))}
        self._loaded: dict[int, dict[str, Any]] = {}

    @property
    def total_count(self) -> int:
        return int(self._slots.size)

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
        ex = self.data.example(int(self._slots[index]))
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
        data_dir: a generated dataset; when unset, the ``preset`` (``tiny`` or ``small``) is
            generated deterministically into the cache on first use.
        preset, seed: which demo dataset to generate.
        shards: load only these shards (e.g. ``[0]`` for the reference's sampled subset).
        order_seed: seed of the within-timestamp shuffle (reference default 123).
        max_requests_per_ts: keep only the first N requests of each timestamp's order.
        repeats: times each timestamp is issued before the next (:meth:`DLRMv3Library.issue_order`).
    """
    data_dir = params.get("data_dir")
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
    data = DLRMv3Data(data_dir, params.get("shards"))
    mr = params.get("max_requests_per_ts")
    return DLRMv3Library(data, order_seed=int(params.get("order_seed", 123)),
                         max_requests_per_ts=None if mr is None else int(mr),
                         repeats=int(params.get("repeats", 1)))
