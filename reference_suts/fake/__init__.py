"""The fake SUT: configurable latency distribution, error rate and token streaming."""

from raybench.core.spec import SUTSpec
from reference_suts.fake.params import FakeParams

SUT_SPEC = SUTSpec(
    name="fake",
    description="sleep-based SUT: latency distribution, error rate, optional token streaming",
    entry="reference_suts.fake.sut:FakeSUT",
    params_model=FakeParams,
)
