"""Test SUT for the Qwen3-VL workload that answers each sample's ground truth as JSON."""

from __future__ import annotations

from raybench.core.spec import SUTSpec

SUT_SPEC = SUTSpec(
    name="oracle_q3vl",
    description="Qwen3-VL test SUT: answers the ground-truth JSON (exact, fenced or parent category)",
    entry="reference_suts.oracle_q3vl.sut:OracleQ3VLSUT",
    extra=None,
    params={"mode": "exact", "max_batch": 64, "max_inflight": 0},
)
