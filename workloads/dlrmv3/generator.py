"""Streaming synthetic recommendation data for DLRMv3 (users x items x timestamps).

Reproduces the semantics of the MLPerf reference generator
(``recommendation/dlrm_v3/streaming_synthetic_data.py``) with vectorised numpy, one timestamp
at a time over a shard of users:

* items ``0..num_items`` are split evenly into ``num_categories`` contiguous blocks of
  ``items_per_category = num_items // num_categories`` ids;
* every user draws ``categories_per_user`` distinct categories; the *position* ``i`` of a
  category in that list fixes its rating profile (first quarter high, last quarter low);
* slots per user: a base slot (``t = -1``, always present), ``train_ts = num_timestamps *
  train_ratio`` train slots, one eval slot (at ``t = train_ts``, always present) and the
  inference slots ``train_ts..num_timestamps-1``; train and inference slots are present with
  probability ``user_sampling_ratio`` (a user "requests" at that timestamp);
* the length of a slot's sequence is ``max(min_seq_len, round(N(mean, mean // 4)))`` with
  ``mean = num_items * avg_samples_per_item / num_users / num_timestamps`` and
  ``min_seq_len = num_eval_candidates + 1``; inference slots draw ``num_inference_candidates``
  items instead and keep a random subset of that length as the slot's UIH;
* category of each position: Dirichlet-process ("rich get richer") draw
  ``p_c = (alpha / K + n_c) / (alpha + sum n)`` with ``alpha ~ U{1..500}`` per slot and ``n_c``
  the user's running count of items seen in category ``c`` (every drawn item counts);
* reachable ids grow linearly: at time ``t`` an item is uniform over the first
  ``int(items_per_category * max(t + 1, 1) / num_timestamps)`` ids of its category;
* rating = (category profile + item quality) / 2, where the quality is drawn once per item
  from ``p = [.2, .25, .25, .2, .1]`` over ``5..1`` and the profile of category position ``i``
  at time ``t`` is a 2- or 3-way choice among ``level + 0.5 cos((t + s) pi / 4)``; the label used
  for prediction is ``rating >= 3.5``.

Train slots keep the whole sequence as UIH and ``num_eval_candidates`` of it as candidates;
the eval slot is ``num_eval_candidates`` items, all candidates.

Output (``out/``): ``meta.json`` (parameters), ``item_quality.npy`` (uint8, one per item) and
``part-XXXXX.npz`` per user shard, with CSR arrays over slots sorted by (user, slot order):
``user_ids``, ``user_categories``, ``slot_user`` (local user row), ``slot_t``, ``slot_kind``
(0 base, 1 train, 2 eval, 3 inference), ``uih_offsets/uih_ids/uih_ratings`` and
``cand_offsets/cand_ids/cand_ratings``. Everything is a pure function of ``seed``.

``layout="reference"`` writes the same data as the MLPerf reference's CSV files instead
(``reference_layout.py``).

CLI: ``python -m workloads.dlrmv3.generator --preset tiny --out DIR [--layout reference]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GeneratorParams", "PRESETS", "KIND_BASE", "KIND_TRAIN", "KIND_EVAL", "KIND_INFER",
           "generate", "generate_shard", "item_quality", "main"]

FORMAT_VERSION = 1
KIND_BASE, KIND_TRAIN, KIND_EVAL, KIND_INFER = 0, 1, 2, 3
QUALITY_VALUES = np.array([5, 4, 3, 2, 1], dtype=np.uint8)
QUALITY_P = np.array([0.2, 0.25, 0.25, 0.2, 0.1])
ALPHA_RANGE = (1, 500)
LABEL_THRESHOLD = 3.5


@dataclass(frozen=True)
class GeneratorParams:
    """Sizes of the synthetic world (defaults = the MLPerf reference's ``main()``)."""

    num_users: int = 5_000_000
    num_items: int = 1_000_000_000
    num_categories: int = 128
    categories_per_user: int = 4
    num_timestamps: int = 100
    avg_samples_per_item: int = 50
    train_ratio: float = 0.9
    user_sampling_ratio: float = 0.7
    num_eval_candidates: int = 32
    num_inference_candidates: int = 2048
    num_shards: int = 100
    seed: int = 1001

    @property
    def items_per_category(self) -> int:
        return self.num_items // self.num_categories

    @property
    def train_ts(self) -> int:
        return int(self.num_timestamps * self.train_ratio)

    @property
    def avg_seq_len(self) -> int:
        """Mean UIH length per (user, timestamp): items * samples/item / users / timestamps."""
        return int(self.num_items * self.avg_samples_per_item / self.num_users / self.num_timestamps)

    @property
    def min_seq_len(self) -> int:
        return self.num_eval_candidates + 1

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        checks = [
            ("num_users", self.num_users >= self.num_shards >= 1),
            ("num_categories", 1 <= self.categories_per_user <= self.num_categories),
            ("num_items", self.items_per_category >= self.num_timestamps),
            ("train_ratio", 0 < self.train_ts < self.num_timestamps),
            ("user_sampling_ratio", 0.0 <= self.user_sampling_ratio <= 1.0),
            ("num_inference_candidates", self.num_inference_candidates >= 1),
            ("num_eval_candidates", self.num_eval_candidates >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"dlrmv3 generator: invalid {name} in {asdict(self)}")


PRESETS: dict[str, GeneratorParams] = {
    # The MLPerf dataset (~2 TB): never generated in tests.
    "reference": GeneratorParams(num_shards=1000),
    # Benchmarks on one machine: ~20 UIH items per timestamp, 256 candidates per request.
    "small": GeneratorParams(num_users=4096, num_items=1_638_400, num_categories=32, avg_samples_per_item=5,
                             num_eval_candidates=8, num_inference_candidates=256, num_shards=4),
    # Tests and the embedded demo: seconds on a laptop core.
    "tiny": GeneratorParams(num_users=512, num_items=8192, num_categories=16, avg_samples_per_item=25,
                            num_eval_candidates=3, num_inference_candidates=64, num_shards=2),
}


def preset(name: str, **overrides: Any) -> GeneratorParams:
    """A named preset with field overrides (``ValueError`` on an unknown name or field)."""
    if name not in PRESETS:
        raise ValueError(f"dlrmv3: unknown preset {name!r} (known: {sorted(PRESETS)})")
    bad = set(overrides) - set(GeneratorParams.__dataclass_fields__)
    if bad:
        raise ValueError(f"dlrmv3: unknown generator field(s) {sorted(bad)}")
    params = replace(PRESETS[name], **overrides)
    params.validate()
    return params


def item_quality(params: GeneratorParams, chunk: int = 1 << 24) -> np.ndarray:
    """Per-item intrinsic rating in 1..5 (uint8), drawn once from ``QUALITY_P``.

    Chunked with one child seed per chunk so the 1B-item table is reproducible in bounded
    temporary memory.
    """
    out = np.empty(params.num_items, dtype=np.uint8)
    for c, start in enumerate(range(0, params.num_items, chunk)):
        rng = np.random.default_rng([params.seed, 0xC0FFEE, c])
        n = min(chunk, params.num_items - start)
        out[start:start + n] = QUALITY_VALUES[rng.choice(5, size=n, p=QUALITY_P)]
    return out


def _profile_options(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Rating-profile values (4 groups x 3 options) and probabilities at time ``t``.

    Group 0 (first quarter of a user's categories) likes most, group 3 least; each option is
    ``level + 0.5 cos((t + s) pi / 4)`` for s = 0, 2, 4 so preferences drift with period 8.
    """
    c1, c2, c3 = (math.cos((t + s) * math.pi / 4) for s in (0, 2, 4))
    values = np.array([
        [4.5 + 0.5 * c1, 4.0 + 0.5 * c2, 0.0],
        [4.5 + 0.5 * c1, 4.0 + 0.5 * c2, 3.5 + 0.5 * c3],
        [3.5 + 0.5 * c1, 3.0 + 0.5 * c2, 2.5 + 0.5 * c3],
        [2.5 + 0.5 * c1, 2.0 + 0.5 * c2, 1.5 + 0.5 * c3],
    ])
    probs = np.array([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    return values, np.cumsum(probs, axis=1)


def _group_of_position(k: int) -> np.ndarray:
    """Profile group (0..3) of each category position 0..k-1, as in the reference."""
    quarter, half, three_q = k // 4, k // 2, k // 4 * 3
    pos = np.arange(k)
    return np.where(pos < quarter, 0, np.where(pos < half, 1, np.where(pos < three_q, 2, 3)))


def _seq_lens(rng: np.random.Generator, params: GeneratorParams, n: int) -> np.ndarray:
    mean = params.avg_seq_len
    lens = np.rint(rng.normal(mean, mean // 4, size=n)).astype(np.int64)
    return np.maximum(lens, params.min_seq_len)


def _first_k_per_segment(rng: np.random.Generator, seg: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Indices (into a token array grouped by ``seg``) of ``k[s]`` random tokens per segment."""
    if seg.size == 0:
        return seg
    order = np.lexsort((rng.random(seg.size), seg))
    seg_sorted = seg[order]
    starts = np.searchsorted(seg_sorted, seg_sorted, side="left")
    rank = np.arange(seg.size) - starts
    return order[rank < k[seg_sorted]]


def generate_shard(params: GeneratorParams, shard: int, quality: np.ndarray) -> dict[str, np.ndarray]:
    """Generate every slot of the users of one shard (deterministic in ``(seed, shard)``)."""
    per = params.num_users // params.num_shards
    first = shard * per
    n = per if shard < params.num_shards - 1 else params.num_users - first
    rng = np.random.default_rng([params.seed, shard])
    k = params.categories_per_user
    cats = np.argsort(rng.random((n, params.num_categories)), axis=1)[:, :k].astype(np.int32)
    counts = np.zeros((n, k), dtype=np.int64)
    groups = _group_of_position(k)
    ipc = params.items_per_category
    slots: list[tuple[int, int, np.ndarray, list[np.ndarray]]] = []  # (order, t, users, arrays)

    schedule = [(-1, KIND_BASE)] + [(t, KIND_TRAIN) for t in range(params.train_ts)]
    schedule += [(params.train_ts, KIND_EVAL)]
    schedule += [(t, KIND_INFER) for t in range(params.train_ts, params.num_timestamps)]
    for order, (t, kind) in enumerate(schedule):
        if kind in (KIND_TRAIN, KIND_INFER):
            active = np.flatnonzero(rng.random(n) < params.user_sampling_ratio)
        else:
            active = np.arange(n)
        uih_len = _seq_lens(rng, params, active.size)
        if kind == KIND_EVAL:
            uih_len[:] = params.num_eval_candidates
        if kind == KIND_INFER:
            uih_len = np.minimum(uih_len, params.num_inference_candidates)
            seq_len = np.full(active.size, params.num_inference_candidates, dtype=np.int64)
        else:
            seq_len = uih_len
        # Dirichlet-process category choice, one alpha per (user, slot).
        alpha = rng.integers(ALPHA_RANGE[0], ALPHA_RANGE[1] + 1, size=active.size)
        c = counts[active]
        p = (alpha[:, None] / k + c) / (alpha[:, None] + c.sum(1, keepdims=True))
        cum = np.cumsum(p, axis=1)
        seg = np.repeat(np.arange(active.size), seq_len)
        pos = (rng.random(seg.size)[:, None] > cum[seg]).sum(1).clip(max=k - 1)
        np.add.at(counts, (active[seg], pos), 1)
        category = cats[active[seg], pos]
        end = int(ipc * max(t + 1, 1) / params.num_timestamps)
        items = category.astype(np.int64) * ipc + rng.integers(0, end, size=seg.size)
        values, cprob = _profile_options(t)
        g = groups[pos]
        option = (rng.random(seg.size)[:, None] > cprob[g]).sum(1).clip(max=2)
        ratings = ((values[g, option] + quality[items]) / 2.0).astype(np.float32)
        if kind == KIND_INFER:
            uih_sel = np.sort(_first_k_per_segment(rng, seg, uih_len))
            cand_sel = np.arange(seg.size)
        elif kind == KIND_EVAL:
            uih_sel = np.arange(seg.size)
            cand_sel = uih_sel
        else:
            uih_sel = np.arange(seg.size)
            want = np.full(active.size, params.num_eval_candidates)
            cand_sel = np.sort(_first_k_per_segment(rng, seg, want))
        slots.append((order, t, kind, active, seg, items, ratings, uih_sel, cand_sel))
    return _pack(params, first, n, cats, slots)


def _pack(params: GeneratorParams, first: int, n: int, cats: np.ndarray,
          slots: list) -> dict[str, np.ndarray]:
    """Lay the slots out sorted by (user, schedule order) as CSR arrays."""
    s_user, s_order, s_t, s_kind = [], [], [], []
    uih_parts, cand_parts = [], []
    for order, t, kind, active, seg, items, ratings, uih_sel, cand_sel in slots:
        s_user.append(active)
        s_order.append(np.full(active.size, order))
        s_t.append(np.full(active.size, t))
        s_kind.append(np.full(active.size, kind))
        uih_parts.append((seg[uih_sel], items[uih_sel], ratings[uih_sel], active.size, order))
        cand_parts.append((seg[cand_sel], items[cand_sel], ratings[cand_sel], active.size, order))
    slot_user = np.concatenate(s_user)
    slot_order = np.concatenate(s_order)
    perm = np.lexsort((slot_order, slot_user))
    out: dict[str, np.ndarray] = {
        "user_ids": np.arange(first, first + n, dtype=np.int64),
        "user_categories": cats,
        "slot_user": slot_user[perm].astype(np.int32),
        "slot_t": np.concatenate(s_t)[perm].astype(np.int16),
        "slot_kind": np.concatenate(s_kind)[perm].astype(np.int8),
    }
    for name, parts in (("uih", uih_parts), ("cand", cand_parts)):
        # Global slot number of each token = slot base of its schedule step + local segment.
        bases = np.cumsum([0] + [p[3] for p in parts])
        tok_slot = np.concatenate([p[0] + b for p, b in zip(parts, bases[:-1], strict=True)])
        ids = np.concatenate([p[1] for p in parts])
        rat = np.concatenate([p[2] for p in parts])
        rank = np.empty_like(perm)
        rank[perm] = np.arange(perm.size)
        new_slot = rank[tok_slot]
        tok_order = np.argsort(new_slot, kind="stable")
        lengths = np.bincount(new_slot, minlength=perm.size)
        out[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out[f"{name}_ids"] = ids[tok_order]
        out[f"{name}_ratings"] = rat[tok_order]
    return out


def generate(params: GeneratorParams, out: str | Path, *, shards: list[int] | None = None,
             log: bool = False, layout: str = "npz") -> Path:
    """Write the dataset for ``params`` into ``out`` (atomically: temp dir + rename).

    Args:
        params: sizes and seed.
        out: target directory (must not exist yet, or be an earlier complete output).
        shards: generate only these shards (for spreading the reference preset over machines);
            ``None`` = all. Partial outputs are written in place without the atomic rename.
        log: print progress per shard.
        layout: ``npz`` (``part-XXXXX.npz``) or ``reference``: the MLPerf reference's CSV files
            (``{shard}.csv``, ``offset.csv``, ``ts_{shard}_{t}.csv``, ``requests_per_ts.csv``,
            ``requests_per_ts_offset.csv``, ``users_cumsum_per_ts.csv``; see
            ``reference_layout.py``), same data; always every shard.
    """
    params.validate()
    out = Path(out)
    if layout not in ("npz", "reference"):
        raise ValueError(f"dlrmv3: unknown layout {layout!r} (npz, reference)")
    if shards is None and (out / "meta.json").exists():
        return out
    if layout == "reference":
        if shards is not None:
            raise ValueError("dlrmv3: layout 'reference' writes every shard (its metadata spans them)")
        return _generate_reference(params, out, log)
    if shards is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".dlrmv3-gen-", dir=out.parent))
    else:
        work = out
        work.mkdir(parents=True, exist_ok=True)
    quality = item_quality(params)
    np.save(work / "item_quality.npy", quality)
    for s in (range(params.num_shards) if shards is None else shards):
        t0 = time.time()
        arrays = generate_shard(params, s, quality)
        np.savez(work / f"part-{s:05d}.npz", **arrays)
        if log:
            print(f"shard {s}: {arrays['user_ids'].size} users, "
                  f"{arrays['slot_user'].size} slots, {time.time() - t0:.1f}s", flush=True)
    meta = {"format_version": FORMAT_VERSION, "params": asdict(params)}
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    if shards is None:
        try:
            os.replace(work, out)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(work, ignore_errors=True)
            if not (out / "meta.json").exists():
                raise
    return out


def _generate_reference(params: GeneratorParams, out: Path, log: bool) -> Path:
    from workloads.dlrmv3.reference_layout import write_layout

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".dlrmv3-gen-", dir=out.parent))
    try:
        quality = item_quality(params)

        def shards() -> Any:
            for s in range(params.num_shards):
                t0 = time.time()
                arrays = generate_shard(params, s, quality)
                if log:
                    print(f"shard {s}: {arrays['user_ids'].size} users, {time.time() - t0:.1f}s", flush=True)
                yield s, arrays

        write_layout(params, shards(), work)
        meta = {"format_version": FORMAT_VERSION, "layout": "reference", "params": asdict(params)}
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if (out / "meta.json").exists():  # another process finished first: keep theirs
            return out
        raise
    return out


def read_meta(data_dir: str | Path) -> GeneratorParams:
    """Parameters of a generated dataset (``ValueError`` naming the file when unreadable)."""
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {meta.get('format_version')} != {FORMAT_VERSION}")
        return GeneratorParams(**meta["params"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"dlrmv3: bad dataset metadata {path}: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--shards", default=None,
                    help="comma-separated shard indices to generate (default: all)")
    ap.add_argument("--layout", default="npz", choices=("npz", "reference"),
                    help="npz shards, or the MLPerf reference's CSV files (0.csv, offset.csv, ...)")
    ap.add_argument("--num-users", type=int, default=None, help="override the preset's num_users")
    ap.add_argument("--num-shards", type=int, default=None, help="override the preset's num_shards (files)")
    args = ap.parse_args(argv)
    overrides: dict[str, Any] = {} if args.seed is None else {"seed": args.seed}
    if args.num_users is not None:
        overrides["num_users"] = args.num_users
    if args.num_shards is not None:
        overrides["num_shards"] = args.num_shards
    try:
        params = preset(args.preset, **overrides)
        shards = None if args.shards is None else [int(s) for s in args.shards.split(",")]
        out = generate(params, args.out, shards=shards, log=True, layout=args.layout)
    except ValueError as exc:
        ap.exit(2, f"{exc}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
