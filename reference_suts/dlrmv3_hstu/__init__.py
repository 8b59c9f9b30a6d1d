"""DLRMv3 HSTU reference SUT (MLPerf ``recommendation/dlrm_v3`` semantics, plain torch).

Only the spec lives here; ``sut.py`` imports torch lazily in ``start()``.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.dlrmv3_hstu.params import DLRMv3HSTUParams

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="dlrmv3_hstu",
    description="DLRMv3 HSTU ranker (5 layers, SiLU attention), row-wise sharded item table, "
                "streaming timestamp order, optional M-FALCON and UIH KV cache",
    entry="reference_suts.dlrmv3_hstu.sut:DLRMv3HSTUSUT",
    extra="dlrm",
    params_model=DLRMv3HSTUParams,
)
