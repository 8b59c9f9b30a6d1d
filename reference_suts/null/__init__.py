"""The null SUT: completes every query at once (measures the harness itself)."""

from raybench.core.spec import SUTSpec
from reference_suts.null.params import NullParams

SUT_SPEC = SUTSpec(
    name="null",
    description="completes every query immediately (harness overhead baseline)",
    entry="reference_suts.null.sut:NullSUT",
    params_model=NullParams,
)
