"""The MLPerf DLRMv3 reference ranking model (``DlrmHSTU``), rebuilt in plain torch with the
reference's module tree, so its parameter names and shapes are the reference state dict's.

Written from ``recommendation/dlrm_v3`` of mlcommons/inference (``configs.py``,
``generative_recommenders/modules/{dlrm_hstu,preprocessors,action_encoder,stu,hstu_transducer,
postprocessors,multitask_module}.py``, ``ops/pytorch/*``). Module tree (``ReferenceDlrmHSTU``):

* ``_embedding_collection.embeddings.{item_id,item_category_id,user_id}.weight`` — FP16 tables
  (torchrec ``EmbeddingCollection``; only in the full model, the dense model has none);
* ``_multitask_module._prediction_module`` — ``Linear(D, 512), SwishLayerNorm(512), Linear(512, tasks)``
  on ``user_embedding * item_embedding``, sigmoid;
* ``_hstu_transducer``:
  ``_stu_module._stu_layers.<i>`` (``_uvqk_weight/_uvqk_beta``, ``_input_norm_*``, ``_output_weight``,
  ``_output_norm_*``), ``_input_preprocessor`` (content MLP on the item embedding, "additional"
  MLP on the category embedding, action encoder + MLP, a batched contextual linear for the user
  token), ``_output_postprocessor`` (time features -> ``_time_feature_combiner`` -> ``_layer_norm``),
  ``_positional_encoder`` (position and time-bucket tables);
* ``_item_embedding_mlp`` — candidate item tower on ``[item_emb, category_emb]``.

One request's sequence (the reference's inference forward at batch size 1):
``[user token ; U history items ; C candidates]``, ``N = 1 + U + C`` tokens:

1. item tokens: ``content_mlp(item) + additional_mlp(category) + action_mlp(actions)``; a history
   item's actions are the bits of its weight (``action_weights[int(rating) - 1]``) over
   ``action_weights`` times the action table; candidates get the target action row;
2. user token: ``bias + user_emb @ W`` (zeroed when ``U + C < min_uih_length``), prepended;
3. ``x * sqrt(D)`` plus a position embedding counted back from the last history item
   (user token 0, last history item 2, candidates 1) and a time-bucket embedding
   ``floor(sqrt(max(query_time - t, 1e-6) / 60))`` (the reference's PyTorch path clamps the
   bucket at ``table.size(1) - 1``, kept here, also clamped to the table's rows);
4. ``num_layers`` STU layers: ``u, v, q, k = LN(x) W + b`` (eps 1e-6), ``u = SiLU(u)``,
   ``A = SiLU(alpha q k^T) / N`` masked (causal over user token + history; a candidate sees the
   whole history and itself), ``y = u * LN(A v)``, ``x <- x + [u, A v, y] W_o``;
5. candidate states -> timestamp postprocessor -> ``* item tower`` -> prediction MLP -> sigmoid.

``N`` is the reference's ``max_seq_len`` argument of the attention: the *batch's* padded length.
This implementation scores each request as a batch of one (``N`` = its own length), so a score
does not depend on which requests share its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from raybench.core.spec import parse_params
from reference_suts.dlrmv3_hstu.params import ReferenceModelParams

__all__ = ["REFERENCE", "TINY", "ReferenceConfig", "ReferenceDlrmHSTU", "RefRequest", "STULayerRef", "make_ref_request",
           "TABLE_NAMES", "attention_mask", "position_ids", "reference_config", "time_buckets"]

TABLE_NAMES = ("item_id", "item_category_id", "user_id")


class ReferenceConfig(ReferenceModelParams):
    """Sizes of the reference model: the ``sut.params.arch`` block itself (fields, defaults and
    checks in :class:`~reference_suts.dlrmv3_hstu.params.ReferenceModelParams`), plus what the
    model derives from them."""

    @property
    def max_uih_len(self) -> int:
        """History kept per request (the reference loader keeps the *first* items)."""
        return self.max_seq_len - self.max_num_candidates - self.contextual_max_len

    @property
    def alpha(self) -> float:
        return 1.0 / self.attn_qk_dim ** 0.5

    def table_rows(self) -> dict[str, int]:
        return {"item_id": self.item_rows, "item_category_id": self.category_rows, "user_id": self.user_rows}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


REFERENCE = ReferenceConfig()
TINY = ReferenceConfig(max_seq_len=1024, num_heads=2, attn_linear_dim=8, attn_qk_dim=8, num_layers=2,
                       table_dim=16, preprocessor_hidden_dim=12, transducer_dim=16, num_position_buckets=64,
                       num_time_buckets=32, item_rows=8192, category_rows=16, user_rows=512, mlp_hidden=24)


def reference_config(values: dict[str, Any] | None = None) -> ReferenceConfig:
    """A config from the reference's sizes and overrides.

    Raises:
        ParamsError: (a ``ValueError``) one line naming the first unknown or bad field.
    """
    return parse_params(ReferenceConfig, values or {}, "sut.params.arch")


# ----------------------------------------------------------------------------- building blocks
class _LayerNorm(nn.Module):
    """``generative_recommenders.ops.layer_norm.LayerNorm`` (``weight``, ``bias``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class _SwishLayerNorm(_LayerNorm):
    """``x * sigmoid(LN(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(super().forward(x))


def _mlp(d_in: int, hidden: int, d_out: int, final_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), _SwishLayerNorm(hidden), nn.Linear(hidden, d_out)]
    if final_norm:
        layers.append(_LayerNorm(d_out))
    return nn.Sequential(*layers)


class _EmbeddingCollection(nn.Module):
    """torchrec ``EmbeddingCollection``'s state: ``embeddings.<table>.weight``, FP16."""

    def __init__(self, cfg: ReferenceConfig, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.embeddings = nn.ModuleDict({
            name: nn.Embedding(rows, cfg.table_dim, dtype=torch.float16, device=device)
            for name, rows in cfg.table_rows().items()})


class _ActionEncoder(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        n = len(cfg.action_weights)
        self.register_buffer("_combined_action_weights", torch.tensor(list(cfg.action_weights), dtype=torch.int64))
        self._action_embedding_table = nn.Parameter(torch.randn(n, cfg.action_embedding_dim))
        self._target_action_embedding_table = nn.Parameter(torch.randn(1, n * cfg.action_embedding_dim))

    def forward(self, uih_actions: torch.Tensor, n_targets: int) -> torch.Tensor:
        """``(U + C, n * dim)``: history actions' bits times the table, then the target row."""
        bits = (torch.bitwise_and(uih_actions[:, None], self._combined_action_weights[None]) > 0)
        uih = (bits[..., None].to(self._action_embedding_table.dtype) * self._action_embedding_table[None]).flatten(1)
        return torch.cat([uih, self._target_action_embedding_table.expand(n_targets, -1)])


class _ContextualPreprocessor(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        d_in, d_out, hid = cfg.table_dim, cfg.transducer_dim, cfg.preprocessor_hidden_dim
        std = math.sqrt(2.0 / (d_in + d_out))
        self._batched_contextual_linear_weights = nn.Parameter(
            torch.randn(cfg.contextual_max_len, d_in, d_out) * std)
        self._batched_contextual_linear_bias = nn.Parameter(torch.zeros(cfg.contextual_max_len, d_out))
        self._content_embedding_mlp = _mlp(d_in, hid, d_out)
        self._additional_embedding_mlp = _mlp(d_in, hid, d_out)      # one feature: item_category_id
        self._action_encoder = _ActionEncoder(cfg)
        self._action_embedding_mlp = _mlp(len(cfg.action_weights) * cfg.action_embedding_dim, hid, d_out)


class _PositionalEncoder(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        p, t, d = cfg.num_position_buckets, cfg.num_time_buckets, cfg.transducer_dim
        self._position_embeddings_weight = nn.Parameter(torch.empty(p, d).uniform_(-(1 / p) ** 0.5, (1 / p) ** 0.5))
        self._timestamp_embeddings_weight = nn.Parameter(
            torch.empty(t + 1, d).uniform_(-(1 / t) ** 0.5, (1 / t) ** 0.5))


class _TimestampLayerNormPostprocessor(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        d, feats = cfg.transducer_dim, cfg.time_duration_features
        self._layer_norm = nn.LayerNorm([d], eps=1e-5)
        self.register_buffer("_period_units", torch.Tensor([f[0] for f in feats]).view(1, -1))
        self.register_buffer("_units_per_period", torch.Tensor([f[1] for f in feats]).view(1, -1))
        self._time_feature_combiner = nn.Linear(d + 2 * len(feats), d)

    def forward(self, emb: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        units = torch.div(ts[:, None].to(self._period_units.dtype), self._period_units, rounding_mode="floor")
        angle = torch.remainder(units, self._units_per_period) / self._units_per_period * 2 * 3.14
        feats = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)   # polar(1, angle)
        return self._layer_norm(self._time_feature_combiner(torch.cat([emb, feats.to(emb.dtype)], dim=-1)))


class STULayerRef(nn.Module):
    """One reference ``STULayer`` (target-aware causal HSTU), split for the cached paths."""

    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        d, h, dv, dq = cfg.transducer_dim, cfg.num_heads, cfg.attn_linear_dim, cfg.attn_qk_dim
        self.h, self.dv, self.dq, self.alpha = h, dv, dq, cfg.alpha
        self._uvqk_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, (2 * dv + 2 * dq) * h)))
        self._uvqk_beta = nn.Parameter(torch.zeros((2 * dv + 2 * dq) * h))
        self._input_norm_weight = nn.Parameter(torch.ones(d))
        self._input_norm_bias = nn.Parameter(torch.zeros(d))
        self._output_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(3 * dv * h, d)))
        self._output_norm_weight = nn.Parameter(torch.ones(dv * h))
        self._output_norm_bias = nn.Parameter(torch.zeros(dv * h))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (n, D)`` -> ``u (n, H*dv)`` (SiLU), ``q, k (n, H, dq)``, ``v (n, H, dv)``."""
        normed = F.layer_norm(x, (x.shape[-1],), self._input_norm_weight, self._input_norm_bias, 1e-6)
        uvqk = torch.addmm(self._uvqk_beta, normed, self._uvqk_weight)
        hdv, hdq = self.h * self.dv, self.h * self.dq
        u, v, q, k = torch.split(uvqk, [hdv, hdv, hdq, hdq], dim=1)
        return (F.silu(u), q.reshape(-1, self.h, self.dq), k.reshape(-1, self.h, self.dq),
                v.reshape(-1, self.h, self.dv))

    def weights(self, q: torch.Tensor, k: torch.Tensor, n_norm: int) -> torch.Tensor:
        """``SiLU(alpha q k^T) / N``, ``(H, nq, nk)``, before the mask."""
        return F.silu(torch.einsum("ihd,jhd->hij", q, k) * self.alpha) / n_norm

    def finish(self, x: torch.Tensor, u: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """``x + [u, attn, u * LN(attn)] W_o``."""
        y = u * F.layer_norm(attn, (attn.shape[-1],), self._output_norm_weight, self._output_norm_bias, 1e-6)
        return torch.addmm(x, torch.cat([u, attn, y], dim=1), self._output_weight)


class _STUStack(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        self._stu_layers = nn.ModuleList(STULayerRef(cfg) for _ in range(cfg.num_layers))


class _HSTUTransducer(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        self._stu_module = _STUStack(cfg)
        self._input_preprocessor = _ContextualPreprocessor(cfg)
        self._output_postprocessor = _TimestampLayerNormPostprocessor(cfg)
        self._positional_encoder = _PositionalEncoder(cfg)


class _MultitaskModule(nn.Module):
    def __init__(self, cfg: ReferenceConfig) -> None:
        super().__init__()
        self._prediction_module = _mlp(cfg.transducer_dim, cfg.mlp_hidden, cfg.num_tasks, final_norm=False)


# ----------------------------------------------------------------------------- index math
def position_ids(n: int, n_cand: int, n_ctx: int, n_buckets: int, device: torch.device | None = None) -> torch.Tensor:
    """Position-table row of each of ``n`` tokens (``n_ctx`` contextual tokens first, ``n_cand``
    candidates last): counted back from the last history item, ``+ n_ctx``; candidates share
    row ``n_ctx``; contextual tokens ``0..n_ctx-1``; clamped to the table."""
    high = n - n_cand
    col = torch.arange(n, device=device).clamp(max=high)
    pos = (high - col + n_ctx).clamp(max=n_buckets - 1)
    pos[:n_ctx] = torch.arange(n_ctx, device=device)
    return pos


def time_buckets(ts: torch.Tensor, max_bucket: int) -> torch.Tensor:
    """``floor(sqrt(max(query_time - t, 1e-6) / 60))`` clamped to ``[0, max_bucket]``; the query
    time is the last token's."""
    delta = (ts[-1] - ts).to(torch.float32).clamp(min=1e-6) / 60.0
    return torch.sqrt(delta).clamp(min=0).to(torch.int64).clamp(0, max_bucket)


def attention_mask(n: int, n_cand: int, device: torch.device | None = None) -> torch.Tensor:
    """``(n, n)`` bool, query row x key column: causal over the first ``n - n_cand`` tokens; a
    candidate sees all of them and itself (the reference's target-aware mask)."""
    ids = torch.arange(n, device=device).clamp(max=n - n_cand)
    return (ids[:, None] - ids[None, :] > 0) | torch.eye(n, dtype=torch.bool, device=device)


# ----------------------------------------------------------------------------- requests
@dataclass
class RefRequest:
    """One request's model inputs, as the reference loader builds them.

    ``uih_actions`` are the history items' action weights (``action_weights[int(rating) - 1]``);
    ``uih_ts`` their timestamps and ``query_time`` the candidates' (the reference's synthetic
    loader uses 1 for every history item and ``max(uih_ts)`` as the query time).
    """

    user: int
    uih_ids: torch.Tensor        # (U,) int64
    uih_actions: torch.Tensor    # (U,) int64
    uih_ts: torch.Tensor         # (U,) int64
    cand_ids: torch.Tensor       # (C,) int64
    query_time: int

    def to(self, device: torch.device) -> RefRequest:
        """The same request with its tensors on ``device`` (itself when already there)."""
        if self.uih_ids.device == device:
            return self
        return RefRequest(self.user, self.uih_ids.to(device), self.uih_actions.to(device), self.uih_ts.to(device),
                          self.cand_ids.to(device), self.query_time)


class ReferenceDlrmHSTU(nn.Module):
    """The reference ``DlrmHSTU`` (inference, one binary task).

    Args:
        cfg: sizes (:data:`REFERENCE` by default).
        with_tables: build ``_embedding_collection`` (the full model; the reference's dense
            workers are built without it, ``is_dense=True``).
        seed: seed of the random init (checkpoints overwrite it).
    """

    def __init__(self, cfg: ReferenceConfig = REFERENCE, *, with_tables: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if with_tables:
                self._embedding_collection = _EmbeddingCollection(cfg)
                with torch.no_grad():
                    for emb in self._embedding_collection.embeddings.values():
                        emb.weight.uniform_(-0.5, 0.5)
            self._multitask_module = _MultitaskModule(cfg)
            self._hstu_transducer = _HSTUTransducer(cfg)
            self._item_embedding_mlp = _mlp(2 * cfg.table_dim, cfg.mlp_hidden, cfg.transducer_dim)

    @property
    def layers(self) -> nn.ModuleList:
        return self._hstu_transducer._stu_module._stu_layers

    # ------------------------------------------------------------------------- pieces
    def category_of(self, ids: torch.Tensor, items_per_category: int) -> torch.Tensor:
        """Category ids the reference loader derives (``id // items_per_category``), clamped to the table."""
        return (ids // items_per_category).clamp(0, self.cfg.category_rows - 1)

    def sequence(self, req: RefRequest, item_uih: torch.Tensor, item_cand: torch.Tensor, cat_uih: torch.Tensor,
                 cat_cand: torch.Tensor, user_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input tokens ``(N, D)`` of the HSTU stack and the candidates' item-tower outputs ``(C, D)``.

        Embeddings are the looked-up table rows (any float dtype; computed in the model's dtype).
        """
        cfg = self.cfg
        dt = self._item_embedding_mlp[0].weight.dtype
        item_uih, item_cand, cat_uih, cat_cand, user_vec = (
            t.to(dt) for t in (item_uih, item_cand, cat_uih, cat_cand, user_vec))
        pre = self._hstu_transducer._input_preprocessor
        u_len, c_len = int(req.uih_ids.shape[0]), int(req.cand_ids.shape[0])
        items = torch.cat([item_uih, item_cand])
        x = pre._content_embedding_mlp(items) + pre._additional_embedding_mlp(torch.cat([cat_uih, cat_cand]))
        x = x + pre._action_embedding_mlp(pre._action_encoder(req.uih_actions, c_len))
        ctx = user_vec * float(u_len + c_len >= cfg.contextual_min_uih_len)
        user_tok = pre._batched_contextual_linear_bias[0] + ctx @ pre._batched_contextual_linear_weights[0]
        seq = torch.cat([user_tok[None], x]) * cfg.transducer_dim ** 0.5
        n = seq.shape[0]
        enc = self._hstu_transducer._positional_encoder
        dev = seq.device
        pos = position_ids(n, c_len, cfg.contextual_max_len, enc._position_embeddings_weight.shape[0], dev)
        ts = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), req.uih_ts.to(dev, torch.int64),
                        torch.full((c_len,), int(req.query_time), dtype=torch.int64, device=dev)])
        tw = enc._timestamp_embeddings_weight
        bucket = time_buckets(ts, min(tw.shape[1], tw.shape[0]) - 1)
        seq = seq + (enc._position_embeddings_weight[pos] + tw[bucket]).to(seq.dtype)
        tower = self._item_embedding_mlp(torch.cat([item_cand, cat_cand], dim=-1))
        return seq, tower

    def head(self, h_cand: torch.Tensor, tower: torch.Tensor, query_time: int) -> torch.Tensor:
        """Logits ``(C,)`` of the first task from the candidates' final states."""
        ts = torch.full((h_cand.shape[0],), int(query_time), dtype=torch.int64, device=h_cand.device)
        user = self._hstu_transducer._output_postprocessor(h_cand, ts)
        return self._multitask_module._prediction_module(user * tower)[:, 0]

    # ------------------------------------------------------------------------- full path
    def encode_full(self, seq: torch.Tensor, n_cand: int) -> torch.Tensor:
        """The reference's masked forward over all ``N`` tokens; final states ``(N, D)``."""
        n = seq.shape[0]
        mask = attention_mask(n, n_cand, seq.device)
        x = seq
        for layer in self.layers:
            u, q, k, v = layer.project(x)
            w = layer.weights(q, k, n) * mask
            x = layer.finish(x, u, torch.einsum("hij,jhd->ihd", w, v).flatten(1))
        return x


def make_ref_request(sample: dict[str, Any], cfg: ReferenceConfig) -> RefRequest:
    """Model inputs of a library sample, built as the reference's synthetic loader does: the
    *first* ``max_uih_len`` history items and ``max_num_candidates_inference`` candidates, action
    weight ``action_weights[int(rating) - 1]`` per history item, every history timestamp 1 and
    the query time ``max(history timestamps)`` (0 without history)."""
    ids = torch.as_tensor(sample["uih_ids"], dtype=torch.int64)[: cfg.max_uih_len]
    ratings = torch.as_tensor(sample["uih_ratings"])[: cfg.max_uih_len]
    weights = torch.tensor(list(cfg.action_weights), dtype=torch.int64)
    actions = weights[ratings.to(torch.int64).clamp(1, len(cfg.action_weights)) - 1]
    u = int(ids.shape[0])
    return RefRequest(user=int(sample["user"]), uih_ids=ids, uih_actions=actions,
                      uih_ts=torch.ones(u, dtype=torch.int64),
                      cand_ids=torch.as_tensor(sample["cand_ids"], dtype=torch.int64)[: cfg.max_num_candidates_inference],
                      query_time=1 if u else 0)
