"""Parameters of the fake SUT (pydantic only: imported by ``raybench list``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from raybench.core.spec import Params

__all__ = [
    "ConstantLatency",
    "ExponentialLatency",
    "FakeParams",
    "Latency",
    "LognormalLatency",
    "Tokens",
    "UniformLatency",
]


class ConstantLatency(Params):
    """Every query takes ``ms``."""

    dist: Literal["constant"] = "constant"
    ms: float = Field(1.0, ge=0)
    """Latency of every query in milliseconds."""


class UniformLatency(Params):
    """Latency drawn uniformly from ``[low_ms, high_ms]``."""

    dist: Literal["uniform"] = "uniform"
    low_ms: float = Field(0.5, ge=0)
    """Lower bound in milliseconds."""
    high_ms: float = Field(1.5, ge=0)
    """Upper bound in milliseconds (>= ``low_ms``)."""

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.high_ms < self.low_ms:
            raise ValueError(f"high_ms ({self.high_ms}) must be >= low_ms ({self.low_ms})")
        return self


class LognormalLatency(Params):
    """Latency ``median_ms * exp(N(0, sigma))``."""

    dist: Literal["lognormal"] = "lognormal"
    median_ms: float = Field(2.0, ge=0)
    """Median latency in milliseconds."""
    sigma: float = Field(0.3, ge=0)
    """Standard deviation of the underlying normal."""


class ExponentialLatency(Params):
    """Exponentially distributed latency with mean ``mean_ms``."""

    dist: Literal["exponential"] = "exponential"
    mean_ms: float = Field(1.0, ge=0)
    """Mean latency in milliseconds."""


Latency = Annotated[
    ConstantLatency | UniformLatency | LognormalLatency | ExponentialLatency, Field(discriminator="dist")
]
"""A latency distribution, chosen by its ``dist`` key."""


class Tokens(Params):
    """Token streaming: a first token after ``ttft_ms``, then one every ``tpot_ms``."""

    n: int | list[int] = 16
    """Output tokens per sample, or ``[lo, hi]`` to draw it uniformly (inclusive)."""
    ttft_ms: float = Field(20.0, ge=0)
    """Time to the first token in milliseconds."""
    tpot_ms: float = Field(5.0, ge=0)
    """Time per further output token in milliseconds."""

    @field_validator("n", mode="before")
    @classmethod
    def _count_or_range(cls, value: Any) -> Any:
        def count(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and x >= 0

        if count(value) or (
            isinstance(value, list) and len(value) == 2 and all(map(count, value)) and value[0] <= value[1]
        ):
            return value
        raise ValueError(f"expected a token count or [lo, hi] with 0 <= lo <= hi, got {value!r}")


class FakeParams(Params):
    """Parameters of :class:`~reference_suts.fake.sut.FakeSUT` (see its module docstring)."""

    name: str = "fake"
    """Name reported for the SUT."""
    latency: Latency = LognormalLatency()
    """Per-query latency distribution (ignored when ``tokens`` is set)."""
    per_sample_ms: float = Field(0.0, ge=0)
    """Extra time per sample of a multi-sample query (Offline batches)."""
    error_rate: float = Field(0.0, ge=0, le=1)
    """Fraction of samples answered with an error."""
    tokens: Tokens | None = None
    """Stream tokens instead of sleeping ``latency``."""
    streaming: bool | None = None
    """Report tokens as they arrive (``None`` = when ``tokens`` is set)."""
    capacity: int = Field(0, ge=0)
    """Queries served concurrently, the rest queue (0 = unlimited)."""
    echo: bool = False
    """Answer with the sample payload (so accuracy checks can verify the data path)."""
    raise_after: int | None = None
    """After this many queries, raise ``RuntimeError``."""
    hang_after: int | None = None
    """After this many queries, never answer."""
    block_ms: float = Field(0.0, ge=0)
    """CPU time spent synchronously in ``issue`` (blocks the event loop)."""
    seed: int = 0
    """RNG seed (combined with the shard index)."""
    max_batch: int = Field(64, ge=1)
    """Samples per Offline call."""
    max_inflight: int = Field(8, ge=0)
    """Concurrent Offline calls (0 = no cap)."""
