"""``dlrmv3_reference``: the MLPerf reference DLRMv3 model served from a reference checkpoint.

Everything but the model is :class:`~reference_suts.dlrmv3_hstu.sut.DLRMv3HSTUSUT`'s: the
streaming order check and timestamp gate, the shared scheduler actor, batching, the payload.
The model is :class:`~reference_suts.dlrmv3_hstu.reference_model.ReferenceDlrmHSTU` (sizes from
``sut.params.arch``, the reference's by default), loaded from ``sut.params.checkpoint``:

* the dense part from ``non_sparse.ckpt`` (``load_state_dict(strict=True)`` on the model built
  without tables, as the reference's dense workers are);
* ``item_id`` and ``user_id`` tables as row-wise shards, each shard reading only its rows from
  ``sparse/`` through memory maps: ``embedding_actors`` Ray actors per table
  (``dlrmv3-emb-<key>-item_id-<s>of<n>``, ``...-user_id-...``) inside Ray (auto), or
  ``n_shards`` local blocks; the 128-row ``item_category_id`` table is read whole, locally;
* shapes are checked against ``sut.params.arch`` first (one line naming the table or key).

Scoring: :class:`~reference_suts.dlrmv3_hstu.reference_engine.ReferenceEngine`, with
``microbatch`` (M-FALCON) and ``uih_cache`` (the cross-request cache; exact-match reuse, see
``reference_engine.py``). Dense forward in float32 on ``device`` (``cpu`` by default, or CUDA:
not run here; the reference runs it in bfloat16 with Triton kernels); tables stay on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reference_suts.dlrmv3_hstu.params import DLRMv3ReferenceParams
from reference_suts.dlrmv3_hstu.sut import DLRMv3HSTUSUT
from workloads.dlrmv3.payload import encode_payload

__all__ = ["DLRMv3ReferenceSUT", "build_reference_engine"]


def _check_shapes(path: str, cfg: Any, dense: dict[str, Any], model: Any) -> None:
    from reference_suts.dlrmv3_hstu.reference_checkpoint import DENSE_FILE, table_shape

    for name, rows in cfg.table_rows().items():
        got_rows, dim, _ = table_shape(path, name)
        if (got_rows, dim) != (rows, cfg.table_dim):
            raise ValueError(f"dlrmv3_reference: table {name!r} in {path}/sparse is {got_rows} x {dim} but "
                             f"sut.params.arch says {rows} x {cfg.table_dim}")
    own = model.state_dict()
    for key in sorted(set(own) | set(dense)):
        if key not in dense or key not in own:
            where = "missing from" if key not in dense else "unexpected in"
            raise ValueError(f"dlrmv3_reference: {key} {where} {path}/{DENSE_FILE} (does sut.params.arch match "
                             "the checkpoint?)")
        if tuple(dense[key].shape) != tuple(own[key].shape):
            raise ValueError(f"dlrmv3_reference: {key} in {path}/{DENSE_FILE} has shape {list(dense[key].shape)}, "
                             f"sut.params.arch gives {list(own[key].shape)}")


def build_reference_engine(params: dict[str, Any], items_per_category: int, *, embedding_actors: int = 0,
                           actor_name: str | None = None) -> tuple[Any, Any, Any, Any]:
    """``(cfg, item embedding, user embedding, engine)`` from ``params`` (validated
    :class:`DLRMv3ReferenceParams`).

    Raises:
        ValueError: an unreadable checkpoint or one that does not match ``params["arch"]``.
    """
    import torch

    from reference_suts.dlrmv3_hstu.reference_checkpoint import dense_state_dict, read_table_rows
    from reference_suts.dlrmv3_hstu.reference_engine import RefCache, ReferenceEngine
    from reference_suts.dlrmv3_hstu.reference_model import ReferenceDlrmHSTU, reference_config
    from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding, make_ray_shards, reference_local_shards
    from reference_suts.dlrmv3_hstu.sut import resolve_device

    device = resolve_device(params.get("device", "cpu"))      # fail before loading anything
    path = str(params["checkpoint"])
    cfg = reference_config(params.get("arch") or {})
    dense = dense_state_dict(path)
    model = ReferenceDlrmHSTU(cfg, with_tables=False)
    _check_shapes(path, cfg, dense, model)
    model.load_state_dict(dense, strict=True)
    tables: dict[str, Any] = {}
    for name in ("item_id", "user_id"):
        source = {"reference": path, "table": name}
        if embedding_actors > 0:
            if not actor_name:
                raise ValueError("dlrmv3_reference: embedding_actors needs an actor name")
            shards = make_ray_shards(source, embedding_actors, f"{actor_name}-{name}",
                                     params.get("embedding_actor_options") or {})
            tables[name] = ShardedEmbedding(shards, shards[0].rows, cfg.table_dim, getattr(torch, shards[0].info["dtype"]))
        else:
            tables[name] = reference_local_shards(source, int(params.get("n_shards", 1)))
    category = read_table_rows(path, "item_category_id", 0, cfg.category_rows)
    cache = RefCache(int(params.get("uih_cache_max_bytes", 1 << 30))) if params.get("uih_cache") else None
    engine = ReferenceEngine(model, tables["item_id"].lookup_many, tables["user_id"].lookup_many, category,
                             items_per_category, microbatch=int(params.get("microbatch", 0)), cache=cache,
                             device=device)
    return cfg, tables["item_id"], tables["user_id"], engine


class DLRMv3ReferenceSUT(DLRMv3HSTUSUT):
    """The reference model behind the DLRMv3 SUT's streaming machinery."""

    name = "dlrmv3_reference"
    params_model = DLRMv3ReferenceParams

    def _build(self, data_params: Any, n_actors: int, emb_name: str | None) -> None:
        self.cfg, self.embedding, self.user_embedding, self.engine = build_reference_engine(
            self.params, int(data_params.items_per_category), embedding_actors=n_actors, actor_name=emb_name)

    def info(self) -> dict[str, Any]:
        """As :meth:`DLRMv3HSTUSUT.info` (``embedding_shards`` = the item table), plus
        ``user_embedding_shards`` and ``user_embedding_memory_bytes``."""
        out = super().info()
        shards = [dict(s.info) if hasattr(s, "info") else
                  {"shard": k, "rows": s.rows, "memory_bytes": s.memory_bytes, "node": "local"}
                  for k, s in enumerate(getattr(self, "user_embedding", None).shards)] if self.engine else []
        out["user_embedding_shards"] = shards
        out["user_embedding_memory_bytes"] = sum(int(s["memory_bytes"]) for s in shards)
        return out

    def _predict(self, samples: Sequence[dict[str, Any]]) -> list[bytes]:
        from reference_suts.dlrmv3_hstu.reference_model import make_ref_request

        reqs = [make_ref_request(s, self.cfg) for s in samples]
        preds = self.engine.predict(reqs)
        return [encode_payload(s["ts_idx"], s["query_idx"], p.numpy(), s["labels"][: p.numel()])
                for s, p in zip(samples, preds, strict=True)]
