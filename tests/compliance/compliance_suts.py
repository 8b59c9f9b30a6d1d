"""Test-only SUTs built to pass or to fail compliance tests (never registered in ``reference_suts``).

* :class:`CachingSUT`: answers a sample it has seen before from a cache, almost at once (what
  TEST04 exists to catch).
* :class:`DivergentSUT`: echoes the sample in accuracy mode but answers something else in
  performance mode (what TEST01 exists to catch).
* :class:`TokenSUT`: int32 token answers, optionally with two trailing EOS tokens, a wrong
  ``n_tokens`` or (streaming) a first token that differs from the answer's (what TEST06 checks),
  and a chosen length (TEST09).
* :class:`TimedOracleYolo`: ``oracle_yolo`` with a fixed service time, so that its runs have a
  duration on a virtual clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import Params, SUTSpec, parse_params
from workloads.yolo11.oracle import OracleYoloSUT
from workloads.yolo11.params import OracleYoloParams


class _Timed(Params):
    ms: float = 2.0
    """Service time of one sample (ms)."""
    max_batch: int = 16
    max_inflight: int = 2


class CachingParams(_Timed):
    cached_ms: float = 0.05
    """Service time of a sample answered from the cache (ms)."""


class CachingSUT:
    """Echoes the sample; a repeated sample costs ``cached_ms`` instead of ``ms``."""

    name = "caching"

    def __init__(self, params: dict | None = None) -> None:
        p = parse_params(CachingParams, params, "sut.params")
        self.p, self.max_batch, self.max_inflight = p, p.max_batch, p.max_inflight
        self.cache: dict[int, bytes] = {}

    async def start(self, ctx: SUTContext) -> None:
        self.cache.clear()

    async def issue(self, query: Query) -> Sequence[Response]:
        misses = sum(1 for i in query.indices if int(i) not in self.cache)
        await asyncio.sleep((misses * self.p.ms + (len(query.indices) - misses) * self.p.cached_ms) / 1e3)
        out = []
        for i, s in zip(query.indices, query.samples, strict=True):
            out.append(Response(data=self.cache.setdefault(int(i), bytes(s))))
        return out

    async def stop(self) -> None:
        return None


class DivergentSUT:
    """Echoes the sample in accuracy mode; in performance mode every byte is inverted."""

    name = "divergent"

    def __init__(self, params: dict | None = None) -> None:
        p = parse_params(_Timed, params, "sut.params")
        self.p, self.max_batch, self.max_inflight = p, p.max_batch, p.max_inflight
        self.invert = False

    async def start(self, ctx: SUTContext) -> None:
        self.invert = ctx.mode != "AccuracyOnly"

    async def issue(self, query: Query) -> Sequence[Response]:
        await asyncio.sleep(self.p.ms * len(query.indices) / 1e3)
        return [Response(data=bytes(b ^ 0xFF for b in bytes(s)) if self.invert else bytes(s)) for s in query.samples]

    async def stop(self) -> None:
        return None


class TokenParams(_Timed):
    tokens: int = 8
    """Tokens per answer (before any trailing EOS)."""
    trailing_eos: int = 1
    """EOS tokens (id 2) at the end of each answer."""
    count_offset: int = 0
    """Added to the n_tokens reported (non-zero: the length check fails)."""
    stream: bool = False
    """Report the first token (with its data, when asked) half-way through, as a streaming SUT."""
    first_token_offset: int = 0
    """Added to the first token id reported while streaming (non-zero: it differs from the answer's)."""


class TokenSUT:
    """Answers int32 token ids ``[index, 10, 11, ..., EOS x trailing_eos]`` with their count."""

    name = "tokens"

    def __init__(self, params: dict | None = None) -> None:
        p = parse_params(TokenParams, params, "sut.params")
        self.p, self.max_batch, self.max_inflight = p, p.max_batch, p.max_inflight

    async def start(self, ctx: SUTContext) -> None:
        return None

    async def issue(self, query: Query) -> Sequence[Response]:
        if self.p.stream:
            await asyncio.sleep(self.p.ms * len(query.indices) / 2e3)
            first = int(query.indices[0]) + 100 + self.p.first_token_offset
            if query.want_token_data:
                query.first_token(np.int32(first).tobytes())
            else:
                query.first_token()
            await asyncio.sleep(self.p.ms * len(query.indices) / 2e3)
        else:
            await asyncio.sleep(self.p.ms * len(query.indices) / 1e3)
        out = []
        for i in query.indices:
            ids = np.array([int(i) + 100, *range(10, 10 + self.p.tokens - 1), *[2] * self.p.trailing_eos], np.int32)
            out.append(Response(data=ids.tobytes(), n_tokens=int(ids.size) + self.p.count_offset))
        return out

    async def stop(self) -> None:
        return None


class TimedOracleParams(OracleYoloParams):
    ms: float = 2.0
    """Service time of one sample (ms)."""


class TimedOracleYolo(OracleYoloSUT):
    """``oracle_yolo`` (ground-truth boxes) with a fixed service time per sample."""

    def __init__(self, params: dict | None = None) -> None:
        params = dict(params or {})
        self.ms = float(params.pop("ms", 2.0))
        super().__init__(params)

    async def issue(self, query: Query) -> Sequence[Response]:
        await asyncio.sleep(self.ms * len(query.indices) / 1e3)
        return await super().issue(query)


SPECS = {
    "caching": SUTSpec("caching", "test: caches answers", "compliance_suts:CachingSUT", params_model=CachingParams),
    "divergent": SUTSpec("divergent", "test: perf answers differ", "compliance_suts:DivergentSUT", params_model=_Timed),
    "tokens": SUTSpec("tokens", "test: int32 token answers", "compliance_suts:TokenSUT", params_model=TokenParams),
    "timed_oracle_yolo": SUTSpec("timed_oracle_yolo", "test: oracle_yolo with a service time",
                                 "compliance_suts:TimedOracleYolo", params_model=TimedOracleParams),
}
