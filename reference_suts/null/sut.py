"""A SUT that answers every sample immediately with an empty payload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext

__all__ = ["NullSUT"]


class NullSUT:
    """Completes each query as soon as it is issued.

    Args:
        params: ``max_batch`` (Offline samples per call), ``max_inflight``,
            ``payload`` (bytes echoed into the accuracy log, default empty).
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        params = params or {}
        self.name = "null"
        self.max_batch = int(params.get("max_batch", 1024))
        self.max_inflight = int(params.get("max_inflight", 4))
        payload = params.get("payload", b"")
        self._payload = payload.encode() if isinstance(payload, str) else bytes(payload)

    async def start(self, ctx: SUTContext) -> None:
        return None

    async def issue(self, query: Query) -> Sequence[Response]:
        r = Response(self._payload)
        return [r] * len(query.indices)

    async def stop(self) -> None:
        return None
