"""Parameters of the synthetic workload."""

from __future__ import annotations

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["SyntheticParams"]


class SyntheticParams(Params):
    """Parameters of the synthetic workload (``workload.params``)."""

    count: int = Field(1024, ge=1)
    """Samples in the library."""
    performance_count: int = Field(1024, ge=1)
    """Samples loaded for performance runs (capped at ``count``)."""
    sample_bytes: int = Field(16, ge=1)
    """Size of each sample payload in bytes."""
