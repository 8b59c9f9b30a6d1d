"""DLRMv3: streaming synthetic recommendation workload (MLPerf ``dlrm-v3``).

Only the spec lives here; ``dataset.py`` generates/loads data with numpy, ``accuracy.py``
scores the reference payload. See README.md.
"""

from __future__ import annotations

from raybench.core.spec import WorkloadSpec
from workloads.dlrmv3.params import DLRMv3Params

__all__ = ["WORKLOAD"]

WORKLOAD = WorkloadSpec(
    name="dlrmv3",
    description="DLRMv3 HSTU ranking on the streaming synthetic dataset (NE / accuracy / AUC)",
    library="workloads.dlrmv3.dataset:load_library",
    default_sut="dlrmv3_hstu",
    scenarios=("Server", "Offline"),
    accuracy="workloads.dlrmv3.accuracy:score",
    mlperf_model="dlrm-v3",
    params_model=DLRMv3Params,
    settings={
        # 24 s at 25 QPS issues ~600 queries: enough for early stopping at p99 (459 with no
        # query over the 80 ms bound). Real runs bring a user.conf (600 s, the real QPS).
        "Server": {"min_duration_ms": 24000, "min_query_count": 100, "server_target_qps": 25.0},
        "Offline": {"min_duration_ms": 5000, "min_query_count": 1, "offline_expected_qps": 50.0},
    },
    sut_params={"dlrmv3_hstu": {"max_batch": 8, "max_inflight": 4}},
)
