"""Synthetic workload: N deterministic byte samples, for measuring the harness with any SUT."""

from raybench.core.spec import WorkloadSpec
from workloads.synthetic.params import SyntheticParams

WORKLOAD = WorkloadSpec(
    name="synthetic",
    description="N generated samples of configurable size; exact-match accuracy with an echoing SUT",
    library="workloads.synthetic.dataset:load_library",
    accuracy="workloads.synthetic.dataset:score",
    default_sut="fake",
    scenarios=("SingleStream", "MultiStream", "Server", "Offline", "Concurrency"),
    mlperf_model=None,
    params_model=SyntheticParams,
    settings={
        # Short runs for demos; real runs set min_duration through user.conf or --set.
        "Offline": {"min_duration_ms": 2000, "offline_expected_qps": 20000},
        "Server": {"min_duration_ms": 5000, "server_target_qps": 200, "server_target_latency_ns": 50_000_000},
        "SingleStream": {"min_duration_ms": 2000, "min_query_count": 100, "single_stream_expected_latency_ns": 2_000_000},
        "MultiStream": {"min_duration_ms": 2000, "min_query_count": 662, "multi_stream_expected_latency_ns": 3_000_000},
        "Concurrency": {"min_duration_ms": 2000, "target_concurrency": 8},
    },
    sut_params={"fake": {"echo": True, "max_batch": 16, "max_inflight": 2}},
)
