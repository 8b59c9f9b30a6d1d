"""MLPerf Inference v6.0 text-to-video: Wan2.2 T2V-A14B on VBench prompts (``wan-2.2-t2v-a14b``).

Samples are text prompts (248 in MLPerf's ``vbench_prompts.txt``), the SUT answers each with an
mp4 (81 frames, 720x1280, 16 fps), and accuracy is the mean of six VBench dimensions x 100,
which must reach 69.7752 (99 % of 70.48). Datacenter scenarios: SingleStream (reported in
seconds; the video takes minutes) and Offline.

With no ``prompts``/``data_dir`` the built-in demo prompts run on the tiny local Wan pipeline
(``sut_params`` below), 9 frames of 32x32, with the videos checked but not VBench-scored.
Nothing heavy is imported here.
"""

from __future__ import annotations

from raybench.core.spec import WorkloadSpec
from workloads.wan22.params import Wan22Params

__all__ = ["WORKLOAD"]

WORKLOAD = WorkloadSpec(
    name="wan22",
    description="Wan2.2 T2V-A14B text-to-video, VBench prompts and score (MLPerf v6.0 wan-2.2-t2v-a14b)",
    library="workloads.wan22.dataset:load_library",
    default_sut="diffusers_wan",
    scenarios=("SingleStream", "Offline"),
    accuracy="workloads.wan22.accuracy:score",
    mlperf_model="wan-2.2-t2v-a14b",
    params_model=Wan22Params,
    # Demo-sized runs (a tiny video takes ~40 ms on one CPU core): 2 s and >= 64 queries (the
    # p90 early-stopping floor). A real run must pass a user.conf (10 min; Offline >= 248 samples).
    settings={
        "SingleStream": {
            "min_duration_ms": 2000,
            "min_query_count": 64,
            "single_stream_expected_latency_ns": 30_000_000,
        },
        "Offline": {"min_duration_ms": 2000, "min_query_count": 8, "offline_expected_qps": 25.0},
    },
    # The demo: the tiny local Wan pipeline on CPU (reference_suts.diffusers_wan.TINY_PRESET);
    # a real run sets sut preset=mlperf (and model=<weights>).
    sut_params={"diffusers_wan": {"preset": "tiny"}},
    # One 720p, 81-frame video takes minutes on a GPU: a 10-minute default would cut real runs.
    query_timeout_s=3600.0,
)
