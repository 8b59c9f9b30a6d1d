"""The fake SUT: configurable latency distribution, error rate and token streaming."""

from raybench.core.spec import SUTSpec

SUT_SPEC = SUTSpec(
    name="fake",
    description="sleep-based SUT: latency distribution, error rate, optional token streaming",
    entry="reference_suts.fake.sut:FakeSUT",
    params={"latency": {"dist": "lognormal", "median_ms": 2.0, "sigma": 0.3}},
)
