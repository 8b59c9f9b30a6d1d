"""Per-request inference for the reference DLRMv3 model, with M-FALCON and a cross-request cache.

Paths (the same function; tests compare them within a stated tolerance):

* **baseline** — the reference's masked forward over ``[user ; history ; candidates]``;
* **M-FALCON** (``microbatch > 0``) — the user token and history are encoded once (causal), each
  layer's K and V kept; candidates are scored in microbatches of ``microbatch`` against those K/V
  and themselves. The attention normaliser stays the request's ``N`` (the reference divides by
  the sequence length, candidates included), so microbatching changes nothing but the cost;
* **cross-request cache** (``cache``) — the per-layer history K/V of a user are reused when the
  next request of that user has the *same* history, candidate count and query time. The
  reference model counts positions back from the last history item and divides attention by
  ``N``, so a longer history (the next timestamp) changes every history token's encoding: there,
  unlike our own HSTU (``engine.py``, absolute positions), a prefix cannot be reused. Hits come
  from a request served again (the reference's ``num_repeats``, our ``workload.params.repeats``).
  Anything else recomputes and replaces the entry; LRU-bounded in bytes; entries hold only
  history state, never candidates.

Lookups: ``item_lookup`` and ``user_lookup`` take a list of id tensors and return rows (one call
per batch: row-wise shards, local or Ray actors); the 128-row category table is local.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reference_suts.dlrmv3_hstu.engine import UIHCache
from reference_suts.dlrmv3_hstu.reference_model import ReferenceDlrmHSTU, RefRequest

__all__ = ["RefCache", "RefCacheEntry", "ReferenceEngine"]

Lookup = Callable[[list[torch.Tensor]], list[torch.Tensor]]


@dataclass
class RefCacheEntry:
    """What a user's history encoding depends on, and its per-layer K/V."""

    key: tuple[bytes, bytes, int, int]        # history ids, actions, candidate count, query time
    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v) + len(self.key[0]) + len(self.key[1])


def _key(req: RefRequest) -> tuple[bytes, bytes, int, int]:
    return (req.uih_ids.numpy().tobytes(), req.uih_actions.numpy().tobytes(), int(req.cand_ids.shape[0]),
            int(req.query_time))


class RefCache(UIHCache):
    """LRU map user -> :class:`RefCacheEntry`, bounded in bytes (:class:`UIHCache`'s bookkeeping).

    The reference model counts positions back from the end of the history and normalises attention
    by the sequence length, so an entry is reused only for the identical request (same history,
    candidate count and query time), not for a longer history that extends it.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        super().__init__(max_bytes)
        self.stats = {"hits": 0, "misses": 0, "invalidated": 0, "evicted": 0}  # no token reuse to count

    @staticmethod
    def _valid(entry: RefCacheEntry, req: RefRequest) -> bool:
        return entry.key == _key(req)

    def get(self, req: RefRequest) -> RefCacheEntry | None:  # type: ignore[override]
        return super().get(req.user, req)

    def put(self, req: RefRequest, k: list[torch.Tensor], v: list[torch.Tensor]) -> None:  # type: ignore[override]
        super().put(req.user, RefCacheEntry(_key(req), k, v))


class ReferenceEngine:
    """Scores requests with the reference model's dense part and its tables.

    Args:
        model: the dense model (no ``_embedding_collection``; eval mode is set here).
        item_lookup, user_lookup: ``f(list of id tensors) -> list of rows`` (e.g.
            ``ShardedEmbedding.lookup_many``).
        category_table: the ``item_category_id`` table ``(rows, dim)``.
        items_per_category: category of item ``i`` is ``i // items_per_category`` (the dataset's).
        microbatch: M-FALCON candidate microbatch; 0 = baseline (unless ``cache`` is set).
        cache: a :class:`RefCache`, or ``None``.
    """

    def __init__(self, model: ReferenceDlrmHSTU, item_lookup: Lookup, user_lookup: Lookup,
                 category_table: torch.Tensor, items_per_category: int, *, microbatch: int = 0,
                 cache: RefCache | None = None, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.item_lookup = item_lookup
        self.user_lookup = user_lookup
        self.category_table = category_table.to(self.device)
        self.items_per_category = int(items_per_category)
        self.microbatch = int(microbatch)
        self.cache = cache
        self.attn_block = 1024

    @torch.no_grad()
    def predict(self, reqs: list[RefRequest]) -> list[torch.Tensor]:
        """Sigmoid scores ``(C,)`` per request, in order, on CPU (ids stay on CPU for the lookups;
        the looked-up rows, the request and the dense forward are on the engine's device)."""
        cfg = self.model.cfg
        ids: list[torch.Tensor] = []
        for r in reqs:
            ids += [r.uih_ids.clamp(0, cfg.item_rows - 1), r.cand_ids.clamp(0, cfg.item_rows - 1)]
        items = [t.to(self.device) for t in self.item_lookup(ids)]
        users = self.user_lookup([torch.tensor([min(max(r.user, 0), cfg.user_rows - 1) for r in reqs])])[0]
        users = users.to(self.device)
        out = []
        for i, r in enumerate(reqs):
            rd = r.to(self.device)
            cat_u = self.category_table[self.model.category_of(rd.uih_ids, self.items_per_category)]
            cat_c = self.category_table[self.model.category_of(rd.cand_ids, self.items_per_category)]
            seq, tower = self.model.sequence(rd, items[2 * i], items[2 * i + 1], cat_u, cat_c, users[i])
            if self.microbatch <= 0 and self.cache is None:
                c = int(r.cand_ids.shape[0])
                logits = self.model.head(self.model.encode_full(seq, c)[seq.shape[0] - c:], tower, r.query_time)
            else:
                logits = self._split(r, seq, tower)
            out.append(torch.sigmoid(logits.float()).cpu())
        return out

    def _split(self, r: RefRequest, seq: torch.Tensor, tower: torch.Tensor) -> torch.Tensor:
        c = int(r.cand_ids.shape[0])
        n = seq.shape[0]
        hist = seq[: n - c]
        entry = self.cache.get(r) if self.cache is not None else None
        if entry is None:
            ks, vs = self.encode_history(hist, n)
            if self.cache is not None:
                self.cache.put(r, ks, vs)
        else:
            ks, vs = entry.k, entry.v
        cand = seq[n - c:]
        m = self.microbatch if self.microbatch > 0 else max(c, 1)
        states = [self.score(cand[a:a + m], ks, vs, n) for a in range(0, c, m)]
        h = torch.cat(states) if states else cand
        return self.model.head(h, tower, r.query_time)

    def encode_history(self, x: torch.Tensor, n_norm: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the user token + history ``x (T, D)`` through every layer causally (normaliser
        ``n_norm``, the full request's length); per-layer K and V."""
        t = x.shape[0]
        cols = torch.arange(t, device=x.device)
        ks, vs = [], []
        for layer in self.model.layers:
            u, q, k, v = layer.project(x)
            parts = []
            for a in range(0, t, self.attn_block):        # query rows in blocks: (H, block, T) at a time
                b = min(t, a + self.attn_block)
                w = layer.weights(q[a:b], k, n_norm) * (cols[None, :] <= torch.arange(a, b, device=x.device)[:, None])
                parts.append(torch.einsum("hij,jhd->ihd", w, v).flatten(1))
            x = layer.finish(x, u, torch.cat(parts))
            ks.append(k)
            vs.append(v)
        return ks, vs

    def score(self, c: torch.Tensor, ks: list[torch.Tensor], vs: list[torch.Tensor], n_norm: int) -> torch.Tensor:
        """Final states of candidate tokens ``c (m, D)``: each sees the history K/V and itself."""
        x = c
        for li, layer in enumerate(self.model.layers):
            u, q, k, v = layer.project(x)
            w_hist = layer.weights(q, ks[li], n_norm)                                   # (H, m, T)
            w_self = torch.nn.functional.silu((q * k).sum(-1) * layer.alpha) / n_norm   # (m, H)
            attn = torch.einsum("hij,jhd->ihd", w_hist, vs[li]) + w_self[..., None] * v
            x = layer.finish(x, u, attn.flatten(1))
        return x
