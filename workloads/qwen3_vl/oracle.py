"""The ``oracle_q3vl`` SUT of ``workloads.qwen3_vl``: it answers what the accuracy scorer expects.

It checks the harness plumbing — request building, response bytes in the accuracy log, the
scorer — independently of any model: with ``mode="exact"`` a run must score F1 = 1.0.

Modes:
    exact:  the ground truth as a bare JSON object (``ProductMetadata.model_dump_json()``).
    fenced: the same JSON inside a ```json fence, which the rules count as unparsable (F1 0).
    parent: the true category without its last level: a depth-d truth scores overlap d-1,
            predicted length d-1, true length d (partial credit; depth-1 truths stay exact).

The ground truth comes from the SUT's own copy of the sample library, built in ``start()``
from ``ctx.workload_params`` (the payloads the harness sends carry no answers). Registered by
``workloads/qwen3_vl/__init__.py`` (``SUTS``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from workloads.qwen3_vl.params import OracleQ3VLParams
from workloads.qwen3_vl.payload import CATEGORY_SEPARATOR, ProductMetadata

__all__ = ["OracleQ3VLSUT", "answer"]


def answer(truth: dict[str, Any], mode: str = "exact") -> str:
    """The oracle's response text for one sample's ground truth."""
    category = truth["category"]
    if mode == "parent":
        levels = category.split(CATEGORY_SEPARATOR)
        category = CATEGORY_SEPARATOR.join(levels[:-1]) if len(levels) > 1 else category
    text = ProductMetadata(
        category=category, brand=truth["brand"], is_secondhand=truth["is_secondhand"]
    ).model_dump_json()
    return f"```json\n{text}\n```" if mode == "fenced" else text


class OracleQ3VLSUT:
    """Answers from the ground truth; no model, no delay. Token timestamps: one per sample."""

    name = "oracle_q3vl"

    def __init__(self, params: dict[str, Any]) -> None:
        p = parse_params(OracleQ3VLParams, params, "sut.params")
        self.mode = p.mode
        self.max_batch = p.max_batch
        self.max_inflight = p.max_inflight
        self._library: Any = None

    async def start(self, ctx: SUTContext) -> None:
        from workloads.qwen3_vl.dataset import load_library

        self._library = await asyncio.to_thread(load_library, dict(ctx.workload_params))

    async def issue(self, query: Query) -> Sequence[Response]:
        if self._library is None:
            raise RuntimeError("oracle_q3vl: issue() called before start()")
        out = []
        for idx in query.indices:
            text = answer(self._library.ground_truth(int(idx)), self.mode)
            query.token()
            out.append(Response(data=text.encode("utf-8"), n_tokens=max(2, len(text.split()))))
        return out

    async def stop(self) -> None:
        self._library = None
