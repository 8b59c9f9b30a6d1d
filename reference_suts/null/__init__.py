"""The null SUT: completes every query at once (measures the harness itself)."""

from raybench.core.spec import SUTSpec

SUT_SPEC = SUTSpec(
    name="null",
    description="completes every query immediately (harness overhead baseline)",
    entry="reference_suts.null.sut:NullSUT",
    params={"max_batch": 1024, "max_inflight": 4},
)
