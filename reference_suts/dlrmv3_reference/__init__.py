"""Registry entry of the ``dlrmv3_reference`` SUT: the MLPerf reference DLRMv3 model, served from a
reference checkpoint. The code lives with the other DLRMv3 SUT in ``reference_suts/dlrmv3_hstu/``
(``reference_model.py``, ``reference_checkpoint.py``, ``reference_engine.py``, ``reference_sut.py``;
see its README); this package only registers it (one ``SUT_SPEC`` per package).
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec
from reference_suts.dlrmv3_hstu.params import DLRMv3ReferenceParams

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="dlrmv3_reference",
    description="DLRMv3 reference model (DlrmHSTU as MLPerf configures it) from a reference checkpoint, "
                "tables streamed into row-wise shards, streaming order, optional M-FALCON and KV cache",
    entry="reference_suts.dlrmv3_hstu.reference_sut:DLRMv3ReferenceSUT",
    extra="dlrm",
    params_model=DLRMv3ReferenceParams,
)
