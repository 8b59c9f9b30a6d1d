"""Row-wise sharded item embedding table (TorchRec's ``ROW_WISE`` layout, in plain torch).

Row ``r`` of a table with ``rows_per_shard = ceil(num_rows / n_shards)`` lives on shard
``r // rows_per_shard`` at local row ``r % rows_per_shard``. A lookup of one request (or a
batch of requests) is deduplicated first (``torch.unique``; a 7K-item UIH plus 2K candidates
repeats ids), each shard gets one call with its unique local rows, and the rows are scattered
back with the inverse index. Row values are copied, never recomputed, so sharded and
unsharded lookups are bitwise identical.

A shard is anything with ``submit(local_rows) -> handle`` and ``wait(handle) -> Tensor``:
:class:`EmbeddingShard` computes in ``submit``; :func:`make_ray_shards` returns handles on Ray
actors whose ``submit`` only sends the request, so all shards work in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

__all__ = ["EmbeddingShard", "ShardLike", "ShardedEmbedding", "split_rows", "make_ray_shards"]


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


class _RayShardHandle:
    """Client side of one remote shard: ``submit`` sends, ``wait`` fetches."""

    def __init__(self, actor: Any, rows: int) -> None:
        self.actor = actor
        self.rows = rows

    def submit(self, local_rows: torch.Tensor) -> Any:
        return self.actor.lookup.remote(local_rows)

    def wait(self, handle: Any) -> torch.Tensor:
        import ray

        return ray.get(handle)


def make_ray_shards(table: torch.Tensor, n: int, options: dict[str, Any] | None = None) -> list[Any]:
    """Put ``n`` row blocks of ``table`` into Ray actors (e.g. one per CPU host).

    Args:
        table: the full item table (on the driver; for the 1B-row table, load each block
            inside its actor instead — see README).
        n: number of shards.
        options: ``ActorClass.options(...)`` kwargs (``num_cpus``, ``resources``,
            ``scheduling_strategy`` for host placement, ...).

    Returns:
        Shard handles usable in :class:`ShardedEmbedding` (``rows_per_shard = ceil(rows / n)``).
    """
    import ray

    remote_cls = ray.remote(EmbeddingShard)
    handles = []
    for block in split_rows(table, n):
        actor = remote_cls.options(**(options or {})).remote(block.clone())
        handles.append(_RayShardHandle(actor, int(block.shape[0])))
    return handles
