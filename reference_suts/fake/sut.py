"""A sleep-based SUT for testing the harness without a model.

Latency per query is drawn from a seeded distribution; errors are injected at a given rate;
token streaming emits a first token after ``ttft_ms`` and one token every ``tpot_ms``; when the
harness asks for the first token's data (an accuracy-logged sample), it is the first 4 bytes of the
answer (one int32 token of an ``echo`` answer). A
``capacity`` limits how many queries it serves at once (the rest queue), so that a target QPS
above ``capacity / mean latency`` saturates it the way a real server does. Fault knobs make it
raise or never answer after a number of queries.

Parameters (all optional; the model is :class:`~reference_suts.fake.params.FakeParams`):
    latency: ``{"dist": "constant"|"uniform"|"lognormal"|"exponential", ...}`` with
        ``ms`` (constant), ``low_ms``/``high_ms`` (uniform), ``median_ms``/``sigma`` (lognormal),
        ``mean_ms`` (exponential). Default lognormal, median 2 ms, sigma 0.3.
    per_sample_ms: extra time per sample of a multi-sample query (Offline batches).
    error_rate: fraction of samples answered with an error.
    tokens: ``{"n": 16 or [lo, hi], "ttft_ms": 20, "tpot_ms": 5}`` to stream tokens.
    capacity: queries served concurrently (0 = unlimited).
    echo: answer with the sample payload (so accuracy checks can verify the data path).
    raise_after / hang_after: after that many queries, raise RuntimeError / never answer.
    block_ms: CPU time spent *synchronously* in ``issue`` (blocks the event loop), to emulate a
        client-side bottleneck; the harness then falls behind and reports lateness.
    seed: RNG seed (combined with the shard index).
    max_batch / max_inflight: Offline batching hints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from reference_suts.fake.params import ConstantLatency, ExponentialLatency, FakeParams, UniformLatency

__all__ = ["FakeSUT"]


class FakeSUT:
    """See the module docstring for parameters.

    Raises:
        ParamsError: one line naming a bad parameter (``sut.params.error_rate: ...``).
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = parse_params(FakeParams, params, "sut.params")
        self.params = p.model_dump()
        self.name = p.name
        self._lat = p.latency
        self.per_sample_ms = p.per_sample_ms
        self.error_rate = p.error_rate
        self.tokens = p.tokens
        # Streaming SUTs report tokens as they arrive (through Ray: a streaming generator).
        self.streaming = bool(self.tokens) if p.streaming is None else p.streaming
        self.capacity = p.capacity
        self.echo = p.echo
        self.raise_after = p.raise_after
        self.hang_after = p.hang_after
        self.block_ms = p.block_ms
        self.max_batch = p.max_batch
        self.max_inflight = p.max_inflight
        self._seed = p.seed
        self._rng = np.random.default_rng(self._seed)
        self._buf = np.zeros(0)
        self._pos = 0
        self._sem: asyncio.Semaphore | None = None
        self._count = 0

    async def start(self, ctx: SUTContext) -> None:
        self._rng = np.random.default_rng([self._seed, ctx.shard])
        self._sem = asyncio.Semaphore(self.capacity) if self.capacity > 0 else None

    async def stop(self) -> None:
        return None

    def _draw_ms(self) -> float:
        if self._pos >= self._buf.shape[0]:
            self._buf = self._sample(4096)
            self._pos = 0
        v = float(self._buf[self._pos])
        self._pos += 1
        return v

    def _sample(self, n: int) -> np.ndarray:
        lat, rng = self._lat, self._rng
        if isinstance(lat, ConstantLatency):
            return np.full(n, lat.ms)
        if isinstance(lat, UniformLatency):
            return rng.uniform(lat.low_ms, lat.high_ms, n)
        if isinstance(lat, ExponentialLatency):
            return rng.exponential(lat.mean_ms, n)
        return lat.median_ms * np.exp(rng.normal(0.0, lat.sigma, n))

    async def issue(self, query: Query) -> Sequence[Response]:
        self._count += 1
        if self.block_ms:
            end = time.perf_counter() + self.block_ms / 1e3
            while time.perf_counter() < end:
                pass
        if self.raise_after is not None and self._count > self.raise_after:
            raise RuntimeError(f"fake SUT failure injected after {self.raise_after} queries")
        if self.hang_after is not None and self._count > self.hang_after:
            await asyncio.Event().wait()  # never answers
        if self._sem is not None:
            async with self._sem:
                return await self._serve(query)
        return await self._serve(query)

    async def _serve(self, query: Query) -> Sequence[Response]:
        n = len(query.indices)
        n_tok = 0
        if self.tokens:
            tk = self.tokens
            spec = tk.n
            n_tok = int(self._rng.integers(spec[0], spec[1] + 1)) if isinstance(spec, list) else spec
            ttft = tk.ttft_ms / 1e3
            tpot = tk.tpot_ms / 1e3
            await asyncio.sleep(ttft)
            if query.want_token_data and n == 1:  # the accuracy log's token_data: the answer's first int32
                query.token(self._answer(query.samples[0])[:4])
            else:
                query.token()
            for _ in range(max(0, n_tok - 1)):
                await asyncio.sleep(tpot)
                query.token()
        else:
            delay_ms = self._draw_ms() + self.per_sample_ms * n
            await asyncio.sleep(delay_ms / 1e3)
        out = []
        for j in range(n):
            if self.error_rate and self._rng.random() < self.error_rate:
                out.append(Response(error="fake SUT injected error"))
                continue
            out.append(Response(data=self._answer(query.samples[j]), n_tokens=n_tok))
        return out

    def _answer(self, sample: Any) -> bytes:
        """The answer's data: the sample itself with ``echo``, else nothing."""
        if not self.echo:
            return b""
        return sample if isinstance(sample, bytes) else str(sample).encode()
