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
        "n_shards": 1,
        "microbatch": 0,           # M-FALCON candidate microbatch; 0 = off
        "uih_cache": False,        # cross-request UIH KV cache
        "uih_cache_max_bytes": 1 << 30,
        "streaming": True,
        "repeats": 1,
        "max_batch": 8,
        "max_inflight": 8,
        "torch_threads": 1,
    },
)
