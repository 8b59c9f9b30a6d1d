"""Test-only SUT for the yolo11 workload: answers every image with its ground-truth boxes.

Used for plumbing tests (payload encoding, accuracy log, scoring): unshifted it must score
mAP = 100 %; ``shift_px`` moves every box to get a known lower score. Needs no model.
"""

from __future__ import annotations

from raybench.core.spec import SUTSpec

__all__ = ["SUT_SPEC"]

SUT_SPEC = SUTSpec(
    name="oracle_yolo",
    description="test-only: answers yolo11 queries with the ground-truth boxes (optionally shifted)",
    entry="reference_suts.oracle_yolo.sut:OracleYoloSUT",
    extra=None,
    params={"shift_px": 0.0, "score": 1.0, "max_batch": 64, "max_inflight": 0, "workload_params": None},
)
