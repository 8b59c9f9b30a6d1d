"""Row-wise sharded item embedding table (TorchRec's ``ROW_WISE`` layout, in plain torch).

Row ``r`` of a table with ``rows_per_shard = ceil(num_rows / n_shards)`` lives on shard
``r // rows_per_shard`` at local row ``r % rows_per_shard``. A lookup of one request (or a
batch of requests) is deduplicated first (``torch.unique``; a 7K-item UIH plus 2K candidates
repeats ids), each shard gets one call with its unique local rows, and the rows are scattered
back with the inverse index. Row values are copied, never recomputed, so sharded and
unsharded lookups are bitwise identical.

A shard is anything with ``submit(local_rows) -> handle`` and ``wait(handle) -> Tensor``:
:class:`EmbeddingShard` computes in ``submit``; :func:`make_ray_shards` returns handles on Ray
actors (:class:`TableBlockShard`, each loading its own block) whose ``submit`` only sends the
request, so all shards work in parallel. Ray is only reached through ``raybench.ray.shared``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

__all__ = ["EmbeddingShard", "ShardLike", "ShardedEmbedding", "TableBlockShard", "load_item_table",
           "make_ray_shards", "reference_local_shards", "split_rows"]


class ShardLike(Protocol):
    rows: int

    def submit(self, local_rows: torch.Tensor) -> Any: ...

    def wait(self, handle: Any) -> torch.Tensor: ...


class EmbeddingShard:
    """A contiguous block of table rows held in local memory."""

    def __init__(self, weight: torch.Tensor) -> None:
        if weight.dim() != 2:
            raise ValueError(f"EmbeddingShard: weight must be 2-D, got shape {tuple(weight.shape)}")
        self.weight = weight
        self.rows = int(weight.shape[0])

    def lookup(self, local_rows: torch.Tensor) -> torch.Tensor:
        """Rows ``(n, d)`` at these local indices."""
        return self.weight.index_select(0, local_rows)

    def submit(self, local_rows: torch.Tensor) -> torch.Tensor:
        return self.lookup(local_rows)

    def wait(self, handle: torch.Tensor) -> torch.Tensor:
        return handle

    @property
    def memory_bytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


def split_rows(table: torch.Tensor, n_shards: int) -> list[torch.Tensor]:
    """Row blocks of ``table`` for ``n_shards`` (views; the last block may be shorter)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    per = -(-table.shape[0] // n_shards)
    return [table[i * per:(i + 1) * per] for i in range(n_shards)]


class ShardedEmbedding:
    """Routes deduplicated lookups to row-wise shards and reassembles them in order.

    Args:
        shards: shard objects, shard ``s`` holding rows ``[s * rows_per_shard, ...)``.
        rows_per_shard: rows of every shard but possibly the last.
        dim: embedding dimension.
    """

    def __init__(self, shards: Sequence[ShardLike], rows_per_shard: int, dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        if not shards:
            raise ValueError("ShardedEmbedding: need at least one shard")
        self.shards = list(shards)
        self.rows_per_shard = int(rows_per_shard)
        self.dim = int(dim)
        self.dtype = dtype
        self.num_rows = sum(int(s.rows) for s in self.shards)
        self.stats = {"lookups": 0, "ids": 0, "unique_ids": 0}

    @classmethod
    def from_table(cls, table: torch.Tensor, n_shards: int) -> ShardedEmbedding:
        """Local shards over a full table (views: no copy)."""
        blocks = split_rows(table, n_shards)
        return cls([EmbeddingShard(b) for b in blocks], blocks[0].shape[0], table.shape[1],
                   table.dtype)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lookup(ids)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(*ids.shape, d)`` of global row ids."""
        flat = ids.reshape(-1).to(torch.int64)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_rows):
            raise IndexError(f"ShardedEmbedding: ids outside 0..{self.num_rows - 1}")
        uniq, inverse = torch.unique(flat, return_inverse=True)      # sorted -> grouped by shard
        shard_of = uniq // self.rows_per_shard
        bounds = torch.searchsorted(shard_of, torch.arange(len(self.shards) + 1))
        pending = []
        for s, shard in enumerate(self.shards):
            a, b = int(bounds[s]), int(bounds[s + 1])
            if b > a:
                pending.append((a, b, shard, shard.submit(uniq[a:b] - s * self.rows_per_shard)))
        rows = torch.empty((uniq.numel(), self.dim), dtype=self.dtype)
        for a, b, shard, handle in pending:
            rows[a:b] = shard.wait(handle)
        self.stats["lookups"] += 1
        self.stats["ids"] += flat.numel()
        self.stats["unique_ids"] += uniq.numel()
        return rows.index_select(0, inverse).reshape(*ids.shape, self.dim)

    def lookup_many(self, id_lists: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One deduplicated lookup for several id tensors (e.g. every UIH and candidate list of
        a batch of requests); returns their embeddings in order."""
        sizes = [t.numel() for t in id_lists]
        if not sizes:
            return []
        out = self.lookup(torch.cat([t.reshape(-1) for t in id_lists]))
        return [o.reshape(*t.shape, self.dim) for o, t in zip(torch.split(out, sizes), id_lists, strict=True)]

    @property
    def memory_bytes(self) -> int:
        return sum(int(getattr(s, "memory_bytes", 0)) for s in self.shards)


def load_item_table(source: dict[str, Any]) -> torch.Tensor:
    """The full item table of a ``source``: ``{"checkpoint": path}`` (memory-mapped, so only
    the rows a caller slices are read) or ``{"config": HSTUConfig dict}`` (seeded random init).

    Raises:
        ValueError: neither key, or the checkpoint has no ``item_table`` (names the file).
    """
    if source.get("checkpoint"):
        path = source["checkpoint"]
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return state["item_table"]
        except (OSError, RuntimeError, KeyError) as exc:
            raise ValueError(f"dlrmv3_hstu: cannot read item_table of checkpoint {path}: {exc}") from exc
    if source.get("config"):
        from reference_suts.dlrmv3_hstu.model import HSTUConfig, init_item_table

        return init_item_table(HSTUConfig(**source["config"])).weight.detach()
    raise ValueError("dlrmv3_hstu: embedding source needs 'checkpoint' or 'config'")


def _reference_block(source: dict[str, Any], shard: int, n_shards: int) -> tuple[torch.Tensor, int]:
    """Rows ``[shard * per, (shard + 1) * per)`` of table ``source["table"]`` of the reference
    checkpoint directory ``source["reference"]``, read through memory maps (only these rows)."""
    from reference_suts.dlrmv3_hstu.reference_checkpoint import read_table_rows, table_shape

    rows, _, _ = table_shape(source["reference"], source["table"])
    per = -(-rows // n_shards)
    start, stop = shard * per, min(rows, (shard + 1) * per)
    if not 0 <= shard < n_shards or start >= stop:
        raise ValueError(f"TableBlockShard: shard {shard} of {n_shards} is empty for {rows} rows")
    return read_table_rows(source["reference"], source["table"], start, stop), per


def reference_local_shards(source: dict[str, Any], n_shards: int) -> ShardedEmbedding:
    """A :class:`ShardedEmbedding` over ``n_shards`` blocks of a reference table, each read
    from disk on its own (in this process)."""
    blocks = [_reference_block(source, s, n_shards) for s in range(n_shards)]
    return ShardedEmbedding([EmbeddingShard(b) for b, _ in blocks], blocks[0][1], int(blocks[0][0].shape[1]),
                            blocks[0][0].dtype)


class TableBlockShard(EmbeddingShard):
    """Shard ``shard`` of ``n_shards`` that loads its own row block (inside its actor, on the
    host that holds it: nothing of the table passes through the SUT replicas).

    Args:
        source: see :func:`load_item_table`.
        shard: this block's index; it holds global rows ``[shard * per, (shard + 1) * per)``
            with ``per = ceil(rows / n_shards)``.
        n_shards: number of blocks.
    """

    def __init__(self, source: dict[str, Any], shard: int, n_shards: int) -> None:
        if source.get("reference"):
            block, per = _reference_block(source, shard, n_shards)
            super().__init__(block)
            self.shard = int(shard)
            self.row_offset = int(shard) * per
            return
        table = load_item_table(source)
        blocks = split_rows(table, n_shards)
        if not 0 <= shard < len(blocks) or blocks[shard].shape[0] == 0:
            raise ValueError(f"TableBlockShard: shard {shard} of {n_shards} is empty for "
                             f"{table.shape[0]} rows")
        super().__init__(blocks[shard].clone())       # own memory: the mmap/full table is dropped
        self.shard = int(shard)
        self.row_offset = int(shard) * int(blocks[0].shape[0])

    def describe(self) -> dict[str, Any]:
        """Placement and memory of this block (for the SUT's info and the run's logs)."""
        import os

        from raybench.ray.shared import node_label

        return {"shard": self.shard, "rows": self.rows, "row_offset": self.row_offset,
                "dim": int(self.weight.shape[1]), "dtype": str(self.weight.dtype).replace("torch.", ""),
                "memory_bytes": self.memory_bytes, "node": node_label(), "pid": os.getpid()}


class _RayShardHandle:
    """Client side of one remote shard: ``submit`` sends, ``wait`` fetches."""

    def __init__(self, actor: Any, info: dict[str, Any]) -> None:
        self.actor = actor
        self.info = info
        self.rows = int(info["rows"])
        self.memory_bytes = int(info["memory_bytes"])

    def submit(self, local_rows: torch.Tensor) -> Any:
        return self.actor.lookup.remote(local_rows)

    def wait(self, handle: Any) -> torch.Tensor:
        from raybench.ray.shared import get

        return get(handle)


def make_ray_shards(source: dict[str, Any], n: int, name: str,
                    options: dict[str, Any] | None = None) -> list[Any]:
    """Get or create the ``n`` row-wise shard actors ``{name}-{s}of{n}`` (one per CPU host, say).

    Every replica of a run calls this with the same ``name``; the first to reach a shard creates
    it (``raybench.ray.shared.named_actor``), the others share it, so the table is in memory once.

    Args:
        source: where each shard loads its block (:func:`load_item_table`).
        n: number of shards.
        name: run-unique name prefix.
        options: Ray actor options (``num_cpus``, ``memory``, ``resources`` such as
            ``{"emb_host": 1}`` to pin shards to CPU hosts, ``scheduling_strategy`` ...).

    Returns:
        Shard handles for :class:`ShardedEmbedding` (``rows_per_shard = ceil(rows / n)``); each
        has ``info`` (:meth:`TableBlockShard.describe`).
    """
    from raybench.ray.shared import get, named_actors

    opts = {"num_cpus": 0, **(options or {})}
    actors = named_actors([(f"{name}-{s}of{n}", (source, s, n), {}) for s in range(n)],
                          TableBlockShard, options=opts)    # blocks load in parallel
    infos = get([a.describe.remote() for a in actors])
    return [_RayShardHandle(a, info) for a, info in zip(actors, infos, strict=True)]
