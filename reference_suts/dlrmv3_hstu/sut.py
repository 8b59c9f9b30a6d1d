"""Reference SUT for DLRMv3: HSTU ranker over a row-wise sharded item table, streaming order.

``issue`` assigns each arriving sample an execution slot from the
:class:`~reference_suts.dlrmv3_hstu.scheduler.StreamingScheduler` (the request served is the
slot's, not the loadgen's ``qsl_idx``, as in the MLPerf reference), waits until its timestamp
may run, scores the request with the :class:`~reference_suts.dlrmv3_hstu.engine.InferenceEngine`
in a worker thread (one batch at a time) and answers with the reference accuracy payload
``[ts_idx, query_idx, preds, labels, weights, n]``.

Params (``SUT_SPEC.params`` defaults):
    config: model config name (``tiny``, ``small``, ``reference``) for random init.
    checkpoint: ``.pt`` written by ``scripts/train_dlrmv3.py`` (overrides ``config``).
    n_shards: row-wise shards of the item table (local).
    microbatch: M-FALCON candidate microbatch (0 = off).
    uih_cache: cross-request UIH KV cache on/off; ``uih_cache_max_bytes`` bounds it.
    streaming: serve in streaming slot order (True) or the loadgen's samples as given.
    repeats: times each timestamp is served before the next (reference ``num_repeats``).
    max_batch, max_inflight: what the harness may send at once (Offline).
    torch_threads: intra-op threads of the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext

__all__ = ["DLRMv3HSTUSUT", "build_engine"]


def _model_config(params: dict[str, Any], data_params: Any) -> Any:
    from reference_suts.dlrmv3_hstu.model import config_for

    return config_for(
        params.get("config", "tiny"), item_hash_size=data_params.num_items,
        items_per_category=data_params.items_per_category,
        num_categories=data_params.num_categories, user_hash_size=data_params.num_users,
        num_timestamps=data_params.num_timestamps, init_seed=int(params.get("seed", 0)))


def build_engine(params: dict[str, Any], data_params: Any) -> Any:
    """Dense model + sharded item table + engine, from a checkpoint or a seeded random init.

    Raises:
        ValueError: when the checkpoint's config does not match the dataset (names the field).
    """
    import torch

    from reference_suts.dlrmv3_hstu.engine import InferenceEngine, UIHCache
    from reference_suts.dlrmv3_hstu.model import HSTUConfig, HSTUDense, HSTURanker
    from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding

    ckpt = params.get("checkpoint")
    if ckpt:
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            cfg = HSTUConfig(**state["config"])
        except (OSError, RuntimeError, KeyError, TypeError) as exc:
            raise ValueError(f"dlrmv3_hstu: cannot load checkpoint {ckpt}: {exc}") from exc
        for field in ("items_per_category", "num_categories", "num_timestamps"):
            if getattr(cfg, field) != getattr(data_params, field):
                raise ValueError(f"dlrmv3_hstu: checkpoint {ckpt} has {field}="
                                 f"{getattr(cfg, field)} but the dataset has "
                                 f"{getattr(data_params, field)}")
        dense = HSTUDense(cfg)
        dense.load_state_dict(state["dense"])
        table = state["item_table"]
    else:
        cfg = _model_config(params, data_params)
        ranker = HSTURanker(cfg)
        dense, table = ranker.dense, ranker.item_emb.weight.detach()
    emb = ShardedEmbedding.from_table(table, int(params.get("n_shards", 1)))
    cache = UIHCache(int(params.get("uih_cache_max_bytes", 1 << 30))) if params.get("uih_cache") else None
    engine = InferenceEngine(dense, emb.lookup_many, microbatch=int(params.get("microbatch", 0)),
                             uih_cache=cache)
    return cfg, emb, engine


class DLRMv3HSTUSUT:
    """Async SUT; construct with params, then ``await start(ctx)``."""

    name = "dlrmv3_hstu"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = dict(params)
        self.max_batch = int(self.params.get("max_batch", 8))
        self.max_inflight = int(self.params.get("max_inflight", 8))
        self.streaming = bool(self.params.get("streaming", True))
        self.library: Any = None
        self.scheduler: Any = None
        self.engine: Any = None
        self.cfg: Any = None
        self.served: list[tuple[int, int]] = []      # (slot seq, library index), in run order
        self._lock: asyncio.Lock | None = None

    async def start(self, ctx: SUTContext) -> None:
        await asyncio.to_thread(self._start_blocking, dict(ctx.workload_params))
        self._lock = asyncio.Lock()

    def _start_blocking(self, workload_params: dict[str, Any]) -> None:
        import torch

        from reference_suts.dlrmv3_hstu.scheduler import StreamingScheduler
        from workloads.dlrmv3.dataset import load_library

        torch.set_num_threads(int(self.params.get("torch_threads", 1)))
        self.library = load_library(workload_params)
        self.cfg, self.embedding, self.engine = build_engine(self.params, self.library.data.params)
        self.scheduler = StreamingScheduler(self.library.counts_per_ts,
                                            int(self.params.get("repeats", 1)))
        self._predict([self.library.get(0)])                  # warm-up
        if self.engine.cache is not None:
            self.engine.cache.clear()

    def _predict(self, samples: Sequence[dict[str, Any]]) -> list[bytes]:
        from reference_suts.dlrmv3_hstu.model import make_request
        from workloads.dlrmv3.accuracy import encode_payload

        preds = self.engine.predict([make_request(s, self.cfg) for s in samples])
        return [encode_payload(s["ts_idx"], s["query_idx"], p.numpy(), s["labels"])
                for s, p in zip(samples, preds, strict=True)]

    async def _run(self, samples: list[dict[str, Any]]) -> list[bytes]:
        assert self._lock is not None, "start() was not awaited"
        async with self._lock:
            return await asyncio.to_thread(self._predict, samples)

    async def issue(self, query: Query) -> Sequence[Response]:
        if not self.streaming:
            try:
                return [Response(data=d) for d in await self._run(list(query.samples))]
            except Exception as exc:  # noqa: BLE001 - reported per sample
                return [Response(error=f"{type(exc).__name__}: {exc}") for _ in query.indices]
        sched = self.scheduler
        slots = [sched.next_slot() for _ in query.indices]     # all at once: no self-deadlock
        out: list[Response | None] = [None] * len(slots)
        for phase in sorted({s.phase for s in slots}):
            group = [i for i, s in enumerate(slots) if s.phase == phase]
            try:
                await sched.wait_ready(slots[group[0]])
                samples = [self.library.get(slots[i].index) for i in group]
                data = await self._run(samples)
                for i, d in zip(group, data, strict=True):
                    out[i] = Response(data=d)
                    self.served.append((slots[i].seq, slots[i].index))
            except Exception as exc:  # noqa: BLE001 - the slot still completes
                for i in group:
                    out[i] = Response(error=f"{type(exc).__name__}: {exc}")
            finally:
                for i in group:
                    await sched.release(slots[i])
        return [r for r in out if r is not None]

    async def stop(self) -> None:
        self.engine = None
