"""The DLRMv3 ranking model: HSTU encoder over the user history, top MLP per candidate.

Design choices of DLRMv3 (MLPerf blog, reference ``configs.py``):

* one sequence per request: a contextual user token, then the UIH items (item embedding +
  category embedding + rating-bucket "action" embedding), then the candidates (no action
  interleaving: the action is added to the item token, not a separate token);
* absolute time/position encoding: a learned position embedding and a timestamp embedding are
  added to every token, so they enter the inputs of q, k and v;
* ``num_layers`` HSTU layers: ``u, v, q, k = SiLU(W LN(x))``, attention
  ``A = Mask(SiLU(alpha q k^T)) / n_norm`` (no softmax, no relative bias),
  ``y = LN(A v) * u``, ``x <- x + W_o [u, y, LN(x)]``;
* mask: causal over the UIH; a candidate attends to every UIH token and to itself only. Hence
  candidates are independent of each other, and a UIH token never sees a candidate, which
  is what makes M-FALCON microbatching and the UIH KV cache exact;
* ``n_norm`` is a fixed constant (the configured max sequence length), not the batch's length,
  so the encoding of a prefix does not change when the sequence grows;
* top MLP on the candidate's final hidden state, one binary task "rating" (label
  ``rating >= 3.5``).

The item table is *not* part of :class:`HSTUDense`: inference looks items up through a
(possibly sharded, possibly remote) embedding; :class:`HSTURanker` adds a local table for
training.

Tensor shapes: ``d`` = embedding dim, ``H`` heads, ``dq`` qk dim and ``dv`` value dim per head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HSTUConfig", "CONFIGS", "config_for", "HSTULayer", "HSTUDense", "HSTURanker", "init_item_table",
           "RequestTensors", "make_request"]


@dataclass(frozen=True)
class HSTUConfig:
    """Model sizes. ``reference`` mirrors MLPerf's ``configs.py``; never build it in tests."""

    embedding_dim: int = 512
    num_layers: int = 5
    num_heads: int = 4
    attn_qk_dim: int = 128
    attn_linear_dim: int = 128
    item_hash_size: int = 1_000_000_000
    user_hash_size: int = 10_000_000
    num_categories: int = 128
    items_per_category: int = 7_812_500
    num_timestamps: int = 100
    max_seq_len: int = 16384
    mlp_hidden: int = 512
    init_seed: int = 0

    @property
    def attn_alpha(self) -> float:
        return 1.0 / self.attn_qk_dim ** 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIGS: dict[str, HSTUConfig] = {
    "reference": HSTUConfig(),
    "small": HSTUConfig(embedding_dim=64, attn_qk_dim=16, attn_linear_dim=16,
                        item_hash_size=1_638_400, user_hash_size=4096, num_categories=32,
                        items_per_category=51_200, max_seq_len=4096, mlp_hidden=128),
    "tiny": HSTUConfig(embedding_dim=32, attn_qk_dim=8, attn_linear_dim=8, item_hash_size=8192,
                       user_hash_size=512, num_categories=16, items_per_category=512,
                       max_seq_len=1024, mlp_hidden=64),
}


def config_for(name: str, **overrides: Any) -> HSTUConfig:
    """A named config with overrides (``ValueError`` naming the bad key)."""
    if name not in CONFIGS:
        raise ValueError(f"dlrmv3_hstu: unknown model config {name!r} (known: {sorted(CONFIGS)})")
    bad = set(overrides) - set(HSTUConfig.__dataclass_fields__)
    if bad:
        raise ValueError(f"dlrmv3_hstu: unknown model config field(s) {sorted(bad)}")
    return replace(CONFIGS[name], **overrides)


class HSTULayer(nn.Module):
    """One HSTU layer, split in the steps the cached paths need (project, attend, finish)."""

    def __init__(self, cfg: HSTUConfig) -> None:
        super().__init__()
        d, h, dq, dv = cfg.embedding_dim, cfg.num_heads, cfg.attn_qk_dim, cfg.attn_linear_dim
        self.h, self.dq, self.dv = h, dq, dv
        self.alpha = cfg.attn_alpha
        self.norm = float(cfg.max_seq_len)
        self.ln_in = nn.LayerNorm(d)
        self.uvqk = nn.Linear(d, h * (2 * dv + 2 * dq))
        self.ln_attn = nn.LayerNorm(h * dv)
        self.out = nn.Linear(2 * h * dv + d, d)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x (..., n, d)`` -> normed x, u ``(..., n, H*dv)``, v, q, k ``(..., n, H, dv|dq)``."""
        hx = self.ln_in(x)
        a = F.silu(self.uvqk(hx))
        hdv, hdq = self.h * self.dv, self.h * self.dq
        u, v, q, k = torch.split(a, [hdv, hdv, hdq, hdq], dim=-1)
        shape = x.shape[:-1]
        return (hx, u, v.reshape(*shape, self.h, self.dv), q.reshape(*shape, self.h, self.dq),
                k.reshape(*shape, self.h, self.dq))

    def weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """SiLU attention weights ``(..., H, nq, nk)`` before masking."""
        s = torch.einsum("...ihd,...jhd->...hij", q, k)
        return F.silu(s * self.alpha) / self.norm

    def finish(self, x: torch.Tensor, hx: torch.Tensor, u: torch.Tensor,
               attn: torch.Tensor) -> torch.Tensor:
        """Output gate and residual: ``x + W_o [u, LN(attn) * u, LN(x)]``."""
        y = self.ln_attn(attn) * u
        return x + self.out(torch.cat([u, y, hx], dim=-1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Full masked layer: ``x (B, n, d)``, ``mask (B, n, n)`` bool (query, key)."""
        hx, u, v, q, k = self.project(x)
        w = self.weights(q, k) * mask[:, None].to(x.dtype)
        attn = torch.einsum("bhij,bjhd->bihd", w, v).flatten(-2)
        return self.finish(x, hx, u, attn)


@dataclass
class RequestTensors:
    """Model inputs of one request (ids already hashed into the tables' ranges).

    ``uih_*`` exclude the contextual user token (added by the model).
    """

    user: int
    query_ts: int
    uih_ids: torch.Tensor       # (U,) int64 item ids
    uih_ratings: torch.Tensor   # (U,) float32 ratings
    uih_ts: torch.Tensor        # (U,) int64 slot timestamps (-1 = base)
    cand_ids: torch.Tensor      # (C,) int64

    def to(self, device: torch.device) -> RequestTensors:
        """The same request with its tensors on ``device`` (itself when already there)."""
        if self.uih_ids.device == device:
            return self
        return RequestTensors(self.user, self.query_ts, self.uih_ids.to(device),
                              self.uih_ratings.to(device), self.uih_ts.to(device),
                              self.cand_ids.to(device))


def make_request(sample: dict[str, Any], cfg: HSTUConfig) -> RequestTensors:
    """Tensors of a library sample; keeps the most recent ``max_seq_len - 2`` UIH items."""
    keep = cfg.max_seq_len - 2
    ids = torch.as_tensor(sample["uih_ids"], dtype=torch.int64)[-keep:]
    return RequestTensors(
        user=int(sample["user"]), query_ts=int(sample["ts"]),
        uih_ids=ids % cfg.item_hash_size,
        uih_ratings=torch.as_tensor(sample["uih_ratings"], dtype=torch.float32)[-keep:],
        uih_ts=torch.as_tensor(sample["uih_ts"], dtype=torch.int64)[-keep:],
        cand_ids=torch.as_tensor(sample["cand_ids"], dtype=torch.int64) % cfg.item_hash_size,
    )


class HSTUDense(nn.Module):
    """Everything except the item table: feature embeddings, HSTU stack, top MLP."""

    def __init__(self, cfg: HSTUConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embedding_dim
        # Seeded construction: every replica of a random-init SUT gets the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            self.user_emb = nn.Embedding(cfg.user_hash_size, d)
            self.cat_emb = nn.Embedding(cfg.num_categories, d)
            self.rating_emb = nn.Embedding(6, d)      # 0 = candidate (unknown), 1..5 = int(rating)
            self.time_emb = nn.Embedding(cfg.num_timestamps + 2, d)   # t = -1 .. num_timestamps
            self.pos_emb = nn.Embedding(cfg.max_seq_len, d)
            self.layers = nn.ModuleList(HSTULayer(cfg) for _ in range(cfg.num_layers))
            self.ln_final = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(2 * d, cfg.mlp_hidden), nn.SiLU(),
                                     nn.Linear(cfg.mlp_hidden, 1))
        with torch.no_grad():
            for emb in (self.user_emb, self.cat_emb, self.rating_emb, self.time_emb, self.pos_emb):
                emb.weight.mul_(0.3)

    # ----------------------------------------------------------------- token embeddings
    def _category(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids // self.cfg.items_per_category).clamp(0, self.cfg.num_categories - 1)

    def uih_tokens(self, req: RequestTensors, item_vecs: torch.Tensor, start: int = 0,
                   with_user: bool = True) -> torch.Tensor:
        """Tokens ``(n, d)`` of UIH positions ``start..``; position 0 is the user token.

        Args:
            item_vecs: item embeddings of ``req.uih_ids[start - 1:]`` (or of all when start=0).
            start: first sequence position to build (for extending a cached prefix).
            with_user: include the user token (only meaningful with ``start == 0``).
        """
        cfg = self.cfg
        first_item = max(start - 1, 0)
        ids = req.uih_ids[first_item:]
        bucket = req.uih_ratings[first_item:].to(torch.int64).clamp(1, 5)
        ts = (req.uih_ts[first_item:] + 1).clamp(0, cfg.num_timestamps + 1)
        n_items = ids.shape[0]
        pos = torch.arange(first_item + 1, first_item + 1 + n_items,
                           device=ids.device).clamp(max=cfg.max_seq_len - 1)
        x = (item_vecs.to(self.pos_emb.weight.dtype) + self.cat_emb(self._category(ids))
             + self.rating_emb(bucket) + self.time_emb(ts) + self.pos_emb(pos))
        if start == 0 and with_user:
            u = self.user_emb.weight[req.user % cfg.user_hash_size] + self.pos_emb.weight[0]
            x = torch.cat([u[None], x], dim=0)
        return x

    def cand_tokens(self, req: RequestTensors, cand_vecs: torch.Tensor, uih_len: int) -> torch.Tensor:
        """Candidate tokens ``(C, d)``: all at the position right after the UIH."""
        c = req.cand_ids.shape[0]
        dev = req.cand_ids.device
        return self.cand_tokens_at(req.cand_ids, cand_vecs, torch.full((c,), uih_len, device=dev),
                                   torch.full((c,), req.query_ts, device=dev))

    def cand_tokens_at(self, ids: torch.Tensor, vecs: torch.Tensor, pos: torch.Tensor,
                       ts: torch.Tensor) -> torch.Tensor:
        """Candidate tokens with explicit positions and query timestamps (training uses one
        sequence for the candidates of many slots, each at its own position)."""
        cfg = self.cfg
        return (vecs.to(self.pos_emb.weight.dtype) + self.cat_emb(self._category(ids))
                + self.rating_emb.weight[0] + self.time_emb((ts + 1).clamp(0, cfg.num_timestamps + 1))
                + self.pos_emb(pos.clamp(max=cfg.max_seq_len - 1)))

    def head(self, h_cand: torch.Tensor, cand_tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., C)`` from final candidate states and their input tokens."""
        return self.mlp(torch.cat([self.ln_final(h_cand), cand_tokens], dim=-1)).squeeze(-1)

    # ------------------------------------------------------------- full (baseline) path
    def forward_padded(self, uih: torch.Tensor, uih_len: torch.Tensor, cand: torch.Tensor,
                       cand_len: torch.Tensor, cand_vis: torch.Tensor | None = None) -> torch.Tensor:
        """Whole-sequence forward of a padded batch; logits ``(B, Cmax)``.

        Args:
            uih: ``(B, Umax, d)`` UIH tokens (incl. the user token), right-padded.
            uih_len: ``(B,)`` valid UIH tokens per row.
            cand: ``(B, Cmax, d)`` candidate tokens, right-padded.
            cand_len: ``(B,)`` valid candidates per row (padded ones are masked as keys).
            cand_vis: ``(B, Cmax)`` UIH tokens visible to each candidate (default: all
                ``uih_len``); training scores the candidates of every slot of a user in one
                sequence, each seeing only the history before its slot.
        """
        b, umax, _ = uih.shape
        cmax = cand.shape[1]
        n = umax + cmax
        i = torch.arange(n, device=uih.device)
        if cand_vis is None:
            cand_vis = uih_len[:, None].expand(b, cmax)
        # visible keys per query: UIH query i sees j <= i (j < uih_len); candidate sees j < vis.
        vis = torch.cat([torch.minimum(i[None, :umax] + 1, uih_len[:, None]), cand_vis], dim=1)
        mask = i[None, None, :] < vis[:, :, None]                          # (B, n, n)
        mask &= (i[None, None, :] < umax)                                  # keys: UIH only ...
        cand_ok = (i[umax:][None, :] - umax) < cand_len[:, None]           # (B, Cmax)
        diag = torch.eye(n, dtype=torch.bool, device=uih.device)[None].clone().expand(b, n, n).clone()
        diag[:, umax:, umax:] &= cand_ok[:, :, None]
        mask |= diag                                                       # ... and itself
        x = torch.cat([uih, cand], dim=1)
        for layer in self.layers:
            x = layer(x, mask)
        return self.head(x[:, umax:], cand)


def init_item_table(cfg: HSTUConfig) -> nn.Embedding:
    """The seeded random-init item table (seed ``init_seed + 1``, scaled by 0.3): the same rows
    wherever it is built, so an embedding-shard actor can rebuild its block without the SUT."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed + 1)
        emb = nn.Embedding(cfg.item_hash_size, cfg.embedding_dim)
    with torch.no_grad():
        emb.weight.mul_(0.3)
    return emb


class HSTURanker(nn.Module):
    """:class:`HSTUDense` plus a local item table, for training and single-process inference."""

    def __init__(self, cfg: HSTUConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dense = HSTUDense(cfg)
        self.item_emb = init_item_table(cfg)

    def batch_logits(self, reqs: list[RequestTensors]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, Cmax)`` and candidate validity mask of a list of requests."""
        uih, cand = [], []
        for r in reqs:
            uih.append(self.dense.uih_tokens(r, self.item_emb(r.uih_ids)))
            cand.append(self.dense.cand_tokens(r, self.item_emb(r.cand_ids), r.uih_ids.shape[0] + 1))
        ul = torch.tensor([u.shape[0] for u in uih])
        cl = torch.tensor([c.shape[0] for c in cand])
        pu = nn.utils.rnn.pad_sequence(uih, batch_first=True)
        pc = nn.utils.rnn.pad_sequence(cand, batch_first=True)
        logits = self.dense.forward_padded(pu, ul, pc, cl)
        valid = torch.arange(pc.shape[1])[None, :] < cl[:, None]
        return logits, valid
