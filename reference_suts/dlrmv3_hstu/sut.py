"""Reference SUT for DLRMv3: HSTU ranker over a row-wise sharded item table, streaming order.

The plan decides what is issued (the workload's ``issue_order``: timestamp by timestamp, with
the workload's ``repeats``); ``issue`` serves the samples the query carries. The j-th sample
of a query is at plan position ``query.id + j``; the
:class:`~reference_suts.dlrmv3_hstu.scheduler.StreamingScheduler` maps it to its timestamp
phase and the library index the streaming order puts there. A sample that is not that index
is answered with an error naming both (the plan and the SUT must agree); the others wait until
their timestamp may run (strict rule with the shared scheduler actor, local rule otherwise: see
``scheduler.py``), are scored with the :class:`~reference_suts.dlrmv3_hstu.engine.InferenceEngine`
in a worker thread (one batch at a time) and answered with the reference accuracy payload
``[ts_idx, query_idx, preds, labels, weights, n]``. The SUT's own library (built from the
workload params) is used only for metadata: dataset params, counts per timestamp, ``repeats``
(1 in accuracy runs, which issue every request once).

Params (:class:`~reference_suts.dlrmv3_hstu.params.DLRMv3HSTUParams`):
    config: model config name (``tiny``, ``small``, ``reference``) for random init.
    checkpoint: ``.pt`` written by ``scripts/train_dlrmv3.py`` (overrides ``config``).
    n_shards: row-wise shards of the item table when they are local (in this process).
    embedding_actors: row-wise shards as Ray actors shared by all replicas (TorchRec-style
        placement: table on CPU hosts, dense forward in the replicas). ``None`` = auto:
        ``n_shards`` actors when running inside a Ray actor (a SUT replica), local otherwise;
        ``0`` = always local.
    embedding_actor_options: Ray options of each shard actor (``num_cpus``, ``memory``,
        ``resources``, e.g. ``{"resources": {"emb_host": 1}}`` to put them on CPU hosts).
    global_order: one streaming scheduler actor shared by all replicas of the run, strict rule
        (``None`` = auto: inside a Ray actor). Without it each SUT instance gates only its own
        queries (local rule).
    run_id: overrides the job id in the shared actors' names (see ``run_name``).
    order_log: CSV path the scheduler appends ``seq,phase,ts_idx,index,client,granted_ns,
        released_ns`` to (one row per sample, ``seq`` = plan position, the scheduler's clock) — to
        verify the order of a run.
    microbatch: M-FALCON candidate microbatch (0 = off).
    uih_cache: cross-request UIH KV cache on/off; ``uih_cache_max_bytes`` bounds it (per replica).
    streaming: check and gate the samples by timestamp (True) or serve them as given, ungated.
    max_batch, max_inflight: what the harness may send at once (Offline).
    torch_threads: intra-op threads of the worker.
    device: where the dense forward runs: ``auto`` (``cuda`` when ``torch.cuda.is_available()``,
        else ``cpu``), ``cpu``, ``cuda`` or ``cuda:N``. Embedding lookups stay on CPU (local
        table or shard actors); their rows go to the device once per batch, scores come back.

Shared-actor names: ``dlrmv3-sched-<key>`` and ``dlrmv3-emb-<key>-<s>of<n>`` with
``key = raybench.ray.shared.run_key(workload_params, params, run_id=run_id)`` = ``<Ray job
id>-<hash of the params>``: every replica of a run is created by the same driver (one job) with
identical params, so they compute the same key without talking to each other; a new ``raybench
run`` process or ``ray job submit`` is a new job. The actors are owned by the replica that created
them and die with the run's replicas.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import validate_params
from reference_suts.dlrmv3_hstu.params import DLRMv3HSTUParams
from workloads.dlrmv3.payload import encode_payload

__all__ = ["DLRMv3HSTUSUT", "build_engine", "resolve_device", "run_name"]

log = logging.getLogger(__name__)


def _model_config(params: dict[str, Any], data_params: Any) -> Any:
    from reference_suts.dlrmv3_hstu.model import config_for

    return config_for(
        params.get("config", "tiny"), item_hash_size=data_params.num_items,
        items_per_category=data_params.items_per_category,
        num_categories=data_params.num_categories, user_hash_size=data_params.num_users,
        num_timestamps=data_params.num_timestamps, init_seed=int(params.get("seed", 0)))


def resolve_device(value: Any) -> Any:
    """``torch.device`` of the ``device`` param (see module doc).

    Raises:
        ValueError: unknown value, or CUDA asked for but absent (names ``sut.params.device``).
    """
    import torch

    name = "auto" if value is None else str(value).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"dlrmv3_hstu: sut.params.device={value!r} is not one of auto, cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"dlrmv3_hstu: sut.params.device={value!r} but CUDA is not available "
                             "(torch.cuda.is_available() is False); use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"dlrmv3_hstu: sut.params.device={value!r} but only "
                             f"{torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def build_engine(params: dict[str, Any], data_params: Any, *, embedding_actors: int = 0,
                 actor_name: str | None = None) -> Any:
    """Dense model + row-wise sharded item table + engine, from a checkpoint or a seeded init.

    With ``embedding_actors > 0`` the table lives in that many Ray actors named
    ``{actor_name}-{s}of{n}`` (each loads its own block); the dense part stays here, on the
    device of ``params["device"]`` (:func:`resolve_device`).

    Raises:
        ValueError: when the checkpoint's config does not match the dataset (names the field),
            or the device is unknown or absent.
    """
    import torch

    from reference_suts.dlrmv3_hstu.engine import InferenceEngine, UIHCache
    from reference_suts.dlrmv3_hstu.model import HSTUConfig, HSTUDense, init_item_table
    from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding, make_ray_shards

    device = resolve_device(params.get("device", "auto"))    # fail before loading anything
    ckpt = params.get("checkpoint")
    table = None
    if ckpt:
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
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
        if embedding_actors <= 0:
            table = state["item_table"]
        source: dict[str, Any] = {"checkpoint": str(ckpt)}
    else:
        cfg = _model_config(params, data_params)
        dense = HSTUDense(cfg)
        if embedding_actors <= 0:
            table = init_item_table(cfg).weight.detach()
        source = {"config": cfg.to_dict()}
    if table is not None:
        emb = ShardedEmbedding.from_table(table, int(params.get("n_shards", 1)))
    else:
        if not actor_name:
            raise ValueError("dlrmv3_hstu: embedding_actors needs an actor name")
        shards = make_ray_shards(source, embedding_actors, actor_name,
                                 params.get("embedding_actor_options") or {})
        emb = ShardedEmbedding(shards, shards[0].rows, cfg.embedding_dim,
                               getattr(torch, shards[0].info["dtype"]))
    cache = UIHCache(int(params.get("uih_cache_max_bytes", 1 << 30))) if params.get("uih_cache") else None
    engine = InferenceEngine(dense, emb.lookup_many, microbatch=int(params.get("microbatch", 0)),
                             uih_cache=cache, device=device)
    return cfg, emb, engine


def run_name(kind: str, workload_params: dict[str, Any], params: dict[str, Any]) -> str:
    """``dlrmv3-<kind>-<run key>``: identical for every replica of one run (see module doc)."""
    from raybench.ray.shared import run_key

    return f"dlrmv3-{kind}-" + run_key(workload_params, params, run_id=params.get("run_id"))


class DLRMv3HSTUSUT:
    """Async SUT; construct with params, then ``await start(ctx)``."""

    name = "dlrmv3_hstu"
    params_model: Any = DLRMv3HSTUParams

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = validate_params(self.params_model, params, "sut.params")
        self.max_batch = int(self.params.get("max_batch", 8))
        self.max_inflight = int(self.params.get("max_inflight", 8))
        self.streaming = bool(self.params.get("streaming", True))
        self.library: Any = None
        self.scheduler: Any = None
        self.remote_scheduler = False
        self.engine: Any = None
        self.embedding: Any = None
        self.cfg: Any = None
        self.served: list[tuple[int, int]] = []      # (plan position, library index), in run order
        self._lock: asyncio.Lock | None = None
        self._info: dict[str, Any] = {}
        self._client = f"{socket.gethostname()}:{os.getpid()}"     # names this SUT in order logs

    async def start(self, ctx: SUTContext) -> None:
        await asyncio.to_thread(self._start_blocking, ctx.workload, dict(ctx.workload_params),
                                ctx.mode == "AccuracyOnly")
        self._lock = asyncio.Lock()

    def _placement(self) -> tuple[int, bool]:
        """(embedding actors, global order) after resolving the ``None`` = auto params."""
        actors, order = self.params.get("embedding_actors"), self.params.get("global_order")
        if actors is None or order is None:
            from raybench.ray.shared import in_ray

            inside = in_ray()
            if actors is None:
                actors = int(self.params.get("n_shards", 1)) if inside else 0
            if order is None:
                order = inside
        return int(actors), bool(order)

    def _start_blocking(self, workload: str, workload_params: dict[str, Any], accuracy: bool = False) -> None:
        import torch

        from raybench.registry import get_workload, make_library
        from reference_suts.dlrmv3_hstu.scheduler import StreamingScheduler

        torch.set_num_threads(int(self.params.get("torch_threads", 1)))
        # The SUT's own copy of the library, built through the registry (never the dataset module).
        self.library = make_library(get_workload(workload), workload_params)
        n_actors, global_order = self._placement()
        emb_name = run_name("emb", workload_params, self.params) if n_actors > 0 else None
        self._build(self.library.data.params, n_actors, emb_name)
        # Accuracy runs issue every request once, in streaming order: one repeat.
        repeats = 1 if accuracy else int(getattr(self.library, "repeats", 1))
        sched_args = (self.library.counts_per_ts, repeats, self.params.get("order_log"))
        sched_name = None
        if self.streaming and global_order:
            from raybench.ray.shared import named_actor

            sched_name = run_name("sched", workload_params, self.params)
            self.scheduler = named_actor(sched_name, StreamingScheduler, *sched_args, strict=True,
                                         options={"num_cpus": 0, "max_concurrency": 100_000})
            self.remote_scheduler = True
        else:
            self.scheduler = StreamingScheduler(*sched_args, strict=False)
        shards = [dict(s.info) if hasattr(s, "info") else
                  {"shard": k, "rows": s.rows, "memory_bytes": s.memory_bytes, "node": "local"}
                  for k, s in enumerate(self.embedding.shards)]
        self._info = {"embedding_shards": shards, "embedding_actors": n_actors,
                      "embedding_memory_bytes": sum(int(s["memory_bytes"]) for s in shards),
                      "embedding_actor_name": emb_name, "scheduler": sched_name or "local",
                      "device": str(self.engine.device)}
        log.info("dlrmv3_hstu: item table %s rows in %d shard(s) (%s), per shard: %s; scheduler %s",
                 self.embedding.num_rows, len(shards), "Ray actors" if n_actors else "local",
                 ", ".join(f"{s['shard']}@{s['node']}={s['memory_bytes'] / 2**20:.1f} MiB" for s in shards),
                 self._info["scheduler"])
        self._predict([self.library.get(0)])                  # warm-up
        if self.engine.cache is not None:
            self.engine.cache.clear()

    def _build(self, data_params: Any, n_actors: int, emb_name: str | None) -> None:
        """Model, item embedding and engine (``self.cfg``, ``self.embedding``, ``self.engine``)."""
        self.cfg, self.embedding, self.engine = build_engine(
            self.params, data_params, embedding_actors=n_actors, actor_name=emb_name)

    def info(self) -> dict[str, Any]:
        """Placement and memory: ``embedding_shards`` (per shard: rows, memory_bytes, node, pid),
        ``embedding_memory_bytes`` (total), ``embedding_actors``, ``scheduler`` (actor name or
        ``local``), ``device`` (of the dense forward)."""
        return dict(self._info)

    def _predict(self, samples: Sequence[dict[str, Any]]) -> list[bytes]:
        from reference_suts.dlrmv3_hstu.model import make_request

        preds = self.engine.predict([make_request(s, self.cfg) for s in samples])
        return [encode_payload(s["ts_idx"], s["query_idx"], p.numpy(), s["labels"])
                for s, p in zip(samples, preds, strict=True)]

    async def _run(self, samples: list[dict[str, Any]]) -> list[bytes]:
        assert self._lock is not None, "start() was not awaited"
        async with self._lock:
            return await asyncio.to_thread(self._predict, samples)

    async def _sched(self, method: str, *args: Any) -> Any:
        """Call the scheduler, local (a coroutine) or the shared actor (an awaitable ref)."""
        fn = getattr(self.scheduler, method)
        return await (fn.remote(*args) if self.remote_scheduler else fn(*args))

    async def issue(self, query: Query) -> Sequence[Response]:
        samples = list(query.samples)
        if not self.streaming:
            try:
                return [Response(data=d) for d in await self._run(samples)]
            except Exception as exc:  # noqa: BLE001 - reported per sample
                return [Response(error=f"{type(exc).__name__}: {exc}") for _ in query.indices]
        n = len(query.indices)
        if int(query.id) < 0:
            why = f"dlrmv3_hstu: query {query.id} has no plan position (streaming needs query ids)"
            return [Response(error=why) for _ in range(n)]
        # All positions at once (no self-deadlock); the lowest phase is granted in the same call.
        slots = await self._sched("claim", [int(query.id) + j for j in range(n)], self._client)
        out: list[Response | None] = [None] * n
        for phase in sorted({s.phase for s in slots}):
            group = [i for i, s in enumerate(slots) if s.phase == phase]
            mine = [slots[i] for i in group]
            try:
                if phase != min(s.phase for s in slots):
                    await self._sched("wait_slots", mine)
                run = []
                for i in group:
                    if int(query.indices[i]) == slots[i].index:
                        run.append(i)
                    else:
                        out[i] = Response(error=(
                            f"dlrmv3_hstu: plan position {slots[i].seq} carries sample {query.indices[i]} but "
                            f"the streaming order serves sample {slots[i].index} there (workload and SUT "
                            f"disagree on the issue order)"))
                if run:
                    data = await self._run([samples[i] for i in run])
                    for i, d in zip(run, data, strict=True):
                        out[i] = Response(data=d)
                        self.served.append((slots[i].seq, slots[i].index))
            except Exception as exc:  # noqa: BLE001 - the positions still complete
                for i in group:
                    if out[i] is None:
                        out[i] = Response(error=f"{type(exc).__name__}: {exc}")
            finally:
                await self._sched("release_many", mine)
        return [r if r is not None else Response(error="dlrmv3_hstu: not served") for r in out]

    async def stop(self) -> None:
        if self.scheduler is not None and not self.remote_scheduler:
            self.scheduler.close()
        self.engine = None
