"""YOLO11 object detection on COCO (MLPerf Inference v6.0 ``yolo-95`` / ``yolo-99``, edge suite).

Importing this package is cheap (no numpy decoding, no torch, no ultralytics): it only declares
:data:`WORKLOAD`. The sample library (``dataset.py``) reads a COCO instances file and its images;
the scorer (``accuracy.py``) decodes the MLPerf float32 payload and runs pycocotools.

With ``data_dir`` unset the library uses the embedded demo: 64 generated images with exact boxes
(``demo.py``), cached under ``$RAYBENCH_CACHE``. The package also registers the test-only
``oracle_yolo`` SUT (``oracle.py``), which answers the ground-truth boxes.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec, WorkloadSpec
from workloads.yolo11.params import OracleYoloParams, Yolo11Params

__all__ = ["ORACLE_SPEC", "SUTS", "WORKLOAD"]

WORKLOAD = WorkloadSpec(
    name="yolo11",
    description="YOLO11 detection, COCO val2017 safe subset (1525 images), mAP@[.5:.95] (MLPerf yolo-95/99)",
    library="workloads.yolo11.dataset:load_library",
    default_sut="ultralytics_yolo",
    # MLPerf edge requires SingleStream, MultiStream and Offline; Server/Concurrency are extras.
    scenarios=("SingleStream", "MultiStream", "Offline", "Server", "Concurrency"),
    accuracy="workloads.yolo11.accuracy:score",
    mlperf_model="yolo",  # mlperf.conf: yolo.*.performance_sample_count_override = 64
    params_model=Yolo11Params,
    # Short runs for the embedded demo on a CPU (yolo11n, ~0.1-0.2 s per image on 2 cores). The
    # runner applies these only when no user.conf is given; real runs bring a user.conf, so the
    # MLPerf rules (600 s minimum duration) apply there.
    settings={
        "SingleStream": {
            "min_duration_ms": 2000,
            # 64 queries: the fewest for which the p90 early-stopping estimate exists (16 was INVALID)
            "min_query_count": 64,
            "single_stream_expected_latency_ns": 200_000_000,
        },
        "MultiStream": {
            "min_duration_ms": 2000,
            "min_query_count": 4,
            "multi_stream_expected_latency_ns": 1_600_000_000,
        },
        "Offline": {"min_duration_ms": 2000, "min_query_count": 1, "offline_expected_qps": 8.0},
        "Server": {
            "min_duration_ms": 2000,
            "min_query_count": 16,
            "server_target_qps": 4.0,
            "server_target_latency_ns": 1_000_000_000,
        },
    },
)

ORACLE_SPEC = SUTSpec(
    name="oracle_yolo",
    description="test-only: answers yolo11 queries with the ground-truth boxes (optionally shifted)",
    entry="workloads.yolo11.oracle:OracleYoloSUT",
    extra=None,
    params_model=OracleYoloParams,
)

SUTS = (ORACLE_SPEC,)
