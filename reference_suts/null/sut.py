"""A SUT that answers every sample immediately with an empty payload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from reference_suts.null.params import NullParams

__all__ = ["NullSUT"]


class NullSUT:
    """Completes each query as soon as it is issued.

    Args:
        params: see :class:`~reference_suts.null.params.NullParams`.
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = parse_params(NullParams, params, "sut.params")
        self.name = "null"
        self.max_batch = p.max_batch
        self.max_inflight = p.max_inflight
        self._payload = p.payload.encode()

    async def start(self, ctx: SUTContext) -> None:
        return None

    async def issue(self, query: Query) -> Sequence[Response]:
        r = Response(self._payload)
        return [r] * len(query.indices)

    async def stop(self) -> None:
        return None
