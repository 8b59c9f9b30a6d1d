"""Per-request inference for the HSTU ranker, with the two KV-cache optimisations.

Paths (all compute the same function; tests check equality within fp tolerance):

* **baseline** — one masked forward over ``[UIH ; candidates]``, as the reference does.
* **M-FALCON** (``microbatch > 0``) — encode the UIH once (causal), keep each layer's K and V,
  then score the candidates in microbatches of ``microbatch``: a candidate's layer output only
  needs the UIH K/V of that layer and its own q, k, v (it attends to the UIH and itself), so
  attention per microbatch is ``m x U`` instead of ``(U + C)^2`` for the whole request.
* **cross-request UIH cache** (``uih_cache``) — the UIH of user ``u`` at inference timestamp
  ``t + 1`` is the UIH at ``t`` plus the slots revealed since; positions are absolute and the
  attention is causal with a fixed normaliser, so the per-layer K/V of the old prefix are
  still exact. Only the new suffix is encoded (it attends to the cached K/V + itself).
  Invalidation: an entry is reused only if the stored UIH (ids, ratings, timestamps) is a
  prefix of the new one (anything else — a truncated history, a replay of an earlier
  timestamp, another dataset — recomputes and replaces it); entries are evicted LRU beyond
  ``max_bytes``. Entries hold only UIH state, never candidate data, so nothing of a request
  leaks into another one's scores; with the streaming scheduler, the entry used at ``t + 1``
  was written by a request of an earlier timestamp.

Devices: the dense model, the per-request tensors fed to it and the cached K/V live on the
engine's ``device``; ids stay on CPU for the lookup (the table is a CPU structure, local or
Ray actors), whose result is moved to the device in one copy per batch; scores come back to
CPU. On CPU nothing is copied, so CPU results are unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference_suts.dlrmv3_hstu.model import HSTUDense, RequestTensors

__all__ = ["UIHCache", "InferenceEngine", "CacheEntry"]

Lookup = Callable[[list[torch.Tensor]], list[torch.Tensor]]


@dataclass
class CacheEntry:
    """Per-layer K ``(U, H, dq)`` / V ``(U, H, dv)`` of a user's encoded UIH (incl. user token)."""

    ids: np.ndarray
    ratings: np.ndarray
    ts: np.ndarray
    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v) + self.ids.nbytes * 3

    def prefix_of(self, req: RequestTensors) -> bool:
        n = self.ids.size
        if req.uih_ids.shape[0] < n:
            return False
        return (np.array_equal(self.ids, req.uih_ids[:n].numpy())
                and np.array_equal(self.ratings, req.uih_ratings[:n].numpy())
                and np.array_equal(self.ts, req.uih_ts[:n].numpy()))


class UIHCache:
    """LRU map user -> :class:`CacheEntry`, bounded in bytes."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict[int, CacheEntry] = OrderedDict()
        self.bytes = 0
        self.stats = {"hits": 0, "misses": 0, "invalidated": 0, "evicted": 0, "reused_tokens": 0,
                      "new_tokens": 0}

    def __len__(self) -> int:
        return len(self._d)

    def get(self, user: int, req: Any) -> Any:
        """The user's entry if it is still valid for ``req`` (:meth:`_valid`), else ``None``."""
        e = self._d.get(user)
        if e is None:
            self.stats["misses"] += 1
            return None
        if not self._valid(e, req):
            self.stats["invalidated"] += 1
            self._drop(user)
            return None
        self.stats["hits"] += 1
        self._d.move_to_end(user)
        return e

    @staticmethod
    def _valid(entry: Any, req: Any) -> bool:
        """Our HSTU reuses a cached history that is a prefix of the request's."""
        return bool(entry.prefix_of(req))

    def put(self, user: int, entry: Any) -> None:
        self._drop(user)
        if entry.nbytes > self.max_bytes:
            return
        self._d[user] = entry
        self.bytes += entry.nbytes
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._d)))
            self.stats["evicted"] += 1

    def _drop(self, user: int) -> None:
        e = self._d.pop(user, None)
        if e is not None:
            self.bytes -= e.nbytes

    def clear(self) -> None:
        self._d.clear()
        self.bytes = 0


class InferenceEngine:
    """Scores requests with a dense model and an item lookup.

    Args:
        dense: the dense model (eval mode is set here).
        lookup: ``f(list of id tensors) -> list of embeddings`` (e.g.
            ``ShardedEmbedding.lookup_many``), called once per batch of requests.
        microbatch: M-FALCON candidate microbatch size; 0 = baseline full forward (unless the
            UIH cache is on, which implies the split path with one microbatch).
        uih_cache: a :class:`UIHCache` for cross-request reuse, or ``None``.
        device: where the dense forward runs (``dense`` is moved there); ``None`` = where
            ``dense``'s parameters already are.
    """

    def __init__(self, dense: HSTUDense, lookup: Lookup, *, microbatch: int = 0,
                 uih_cache: UIHCache | None = None, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(dense.parameters()).device
        self.dense = dense.to(self.device).eval()
        self.lookup = lookup
        self.microbatch = int(microbatch)
        self.cache = uih_cache

    @torch.no_grad()
    def predict(self, reqs: list[RequestTensors]) -> list[torch.Tensor]:
        """Sigmoid scores ``(C,)`` per request, in order, on CPU."""
        ids: list[torch.Tensor] = []
        for r in reqs:
            ids += [r.uih_ids, r.cand_ids]
        vecs = self._to_device(self.lookup(ids))
        out = []
        for i, r in enumerate(reqs):
            uih_vecs, cand_vecs = vecs[2 * i], vecs[2 * i + 1]
            if self.microbatch <= 0 and self.cache is None:
                logits = self._baseline(r.to(self.device), uih_vecs, cand_vecs)
            else:
                logits = self._split(r, uih_vecs, cand_vecs)
            out.append(torch.sigmoid(logits.float()))
        if self.device.type == "cpu" or not out:
            return out
        return list(torch.cat(out).cpu().split([p.shape[0] for p in out]))   # one copy back

    def _to_device(self, vecs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Looked-up rows ``(n_i, d)`` moved to the device in one copy (none on CPU)."""
        if self.device.type == "cpu" or not vecs:
            return vecs
        flat = torch.cat([v.reshape(-1, v.shape[-1]) for v in vecs]).to(self.device)
        return [f.reshape(v.shape) for f, v in
                zip(flat.split([v.reshape(-1, v.shape[-1]).shape[0] for v in vecs]), vecs, strict=True)]

    # ------------------------------------------------------------------------- paths
    def _baseline(self, r: RequestTensors, uih_vecs: torch.Tensor,
                  cand_vecs: torch.Tensor) -> torch.Tensor:
        d = self.dense
        uih = d.uih_tokens(r, uih_vecs)
        cand = d.cand_tokens(r, cand_vecs, uih.shape[0])
        return d.forward_padded(uih[None], torch.tensor([uih.shape[0]], device=uih.device), cand[None],
                                torch.tensor([cand.shape[0]], device=uih.device))[0]

    def _split(self, r: RequestTensors, uih_vecs: torch.Tensor,
               cand_vecs: torch.Tensor) -> torch.Tensor:
        d = self.dense
        entry = self.cache.get(r.user, r) if self.cache is not None else None   # CPU ids
        rd = r.to(self.device)                                                  # model inputs
        n_items = r.uih_ids.shape[0]
        if entry is None:
            ks, vs = self.encode_uih(d.uih_tokens(rd, uih_vecs), None)
        else:
            done = entry.ids.size                              # items already encoded
            if done == n_items:
                ks, vs = entry.k, entry.v
            else:
                x = d.uih_tokens(rd, uih_vecs[done:], start=done + 1)
                ks, vs = self.encode_uih(x, (entry.k, entry.v))
            if self.cache is not None:
                self.cache.stats["reused_tokens"] += done + 1
        if self.cache is not None:
            self.cache.stats["new_tokens"] += n_items + 1 - (0 if entry is None else entry.ids.size + 1)
            self.cache.put(r.user, CacheEntry(r.uih_ids.numpy().copy(), r.uih_ratings.numpy().copy(),
                                              r.uih_ts.numpy().copy(), ks, vs))
        cand = d.cand_tokens(rd, cand_vecs, n_items + 1)
        m = self.microbatch if self.microbatch > 0 else cand.shape[0]
        return torch.cat([self.score_candidates(cand[a:a + m], ks, vs)
                          for a in range(0, cand.shape[0], m)])

    def encode_uih(self, x: torch.Tensor, prefix: tuple[list[torch.Tensor], list[torch.Tensor]] | None
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the UIH tokens ``x (n, d)`` (positions after the cached prefix, if any) through
        every layer causally; returns the full per-layer K and V (prefix + new)."""
        ks, vs = [], []
        p = 0 if prefix is None else prefix[0][0].shape[0]
        n = x.shape[0]
        ar = torch.arange(p + n, device=x.device)
        causal = ar[None, :] <= (p + ar[:n])[:, None]                              # (n, p + n)
        for li, layer in enumerate(self.dense.layers):
            hx, u, v, q, k = layer.project(x)
            if prefix is not None:
                k = torch.cat([prefix[0][li], k])
                v = torch.cat([prefix[1][li], v])
            w = layer.weights(q, k) * causal
            attn = torch.einsum("hij,jhd->ihd", w, v).flatten(-2)
            x = layer.finish(x, hx, u, attn)
            ks.append(k)
            vs.append(v)
        return ks, vs

    def score_candidates(self, c: torch.Tensor, ks: list[torch.Tensor],
                         vs: list[torch.Tensor]) -> torch.Tensor:
        """Logits of candidate tokens ``c (m, d)`` attending to the UIH K/V and themselves."""
        x = c
        for li, layer in enumerate(self.dense.layers):
            hx, u, v, q, k = layer.project(x)
            w_uih = layer.weights(q, ks[li])                                   # (H, m, U)
            w_self = torch.nn.functional.silu((q * k).sum(-1) * layer.alpha) / layer.norm   # (m, H)
            attn = torch.einsum("hij,jhd->ihd", w_uih, vs[li]) + w_self[..., None] * v
            x = layer.finish(x, hx, u, attn.flatten(-2))
        return self.dense.head(x, c)
