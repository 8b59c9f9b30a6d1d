"""DLRMv3 HSTU reference SUT (MLPerf ``recommendation/dlrm_v3`` semantics, plain torch).

Only the spec lives here; ``sut.py`` imports torch lazily in ``start()``.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="dlrmv3_hstu",
    description="DLRMv3 HSTU ranker (5 layers, SiLU attention), row-wise sharded item table, "
                "streaming timestamp order, optional M-FALCON and UIH KV cache",
    entry="reference_suts.dlrmv3_hstu.sut:DLRMv3HSTUSUT",
    extra="dlrm",
    params={
        "config": "tiny",          # random init sized to the dataset; real runs: checkpoint
        "checkpoint": None,        # .pt from scripts/train_dlrmv3.py
        "seed": 0,
        "n_shards": 1,             # row-wise shards (local, or the number of actors on Ray)
        "embedding_actors": None,  # None = auto (n_shards Ray actors inside a Ray replica); 0 = local
        "embedding_actor_options": {},   # Ray options per shard actor (num_cpus 0 by default)
        "global_order": None,      # None = auto (one scheduler actor per run inside Ray)
        "run_id": None,            # overrides the Ray job id in shared-actor names
        "order_log": None,         # CSV of (seq, phase, ts, index, granted_ns, released_ns)
        "microbatch": 0,           # M-FALCON candidate microbatch; 0 = off
        "uih_cache": False,        # cross-request UIH KV cache
        "uih_cache_max_bytes": 1 << 30,
        "streaming": True,
        "repeats": 1,
        "max_batch": 8,
        "max_inflight": 8,
        "torch_threads": 1,
        "device": "auto",          # dense forward: auto (cuda if available), cpu, cuda, cuda:N
    },
)
