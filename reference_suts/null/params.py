"""Parameters of the null SUT."""

from __future__ import annotations

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["NullParams"]


class NullParams(Params):
    """Parameters of :class:`~reference_suts.null.sut.NullSUT`."""

    max_batch: int = Field(1024, ge=1)
    """Samples per Offline call."""
    max_inflight: int = Field(4, ge=0)
    """Concurrent Offline calls (0 = no cap)."""
    payload: str = ""
    """Text answered for every sample (UTF-8 encoded into the accuracy log)."""
