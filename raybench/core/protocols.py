"""The seams of the measurement kernel: what a SUT, a sample library and a clock must provide.

The kernel owns these interfaces; ``reference_suts/``, ``workloads/`` and ``raybench/ray``
implement them. Nothing here imports Ray or torch.

Vocabulary follows MLPerf LoadGen: a *sample library* is LoadGen's QSL, a *query* carries one or
more samples (1 in Server/SingleStream, 8 in MultiStream, a batch of the single Offline query),
and the SUT answers every sample of a query with a :class:`Response`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Clock",
    "Query",
    "Response",
    "SUT",
    "SUTContext",
    "SampleLibrary",
]


@runtime_checkable
class Clock(Protocol):
    """A monotonic clock in integer nanoseconds, injected so tests can run on virtual time."""

    def now_ns(self) -> int:
        """Current time in ns (any fixed origin; only differences are meaningful)."""
        ...

    async def sleep_until(self, t_ns: int) -> None:
        """Suspend the calling task until ``now_ns() >= t_ns`` (returns at once if already past)."""
        ...

    async def nap_until(self, t_ns: int) -> None:
        """Like :meth:`sleep_until` but with the loop timer's precision only (no busy waiting)."""
        ...


@runtime_checkable
class SampleLibrary(Protocol):
    """MLPerf's query sample library (QSL).

    ``total_count`` samples exist; at most ``performance_count`` are held in memory at once
    during a performance run. Sample index ``i`` is the ``qsl_idx`` written to the accuracy log.
    """

    name: str

    @property
    def total_count(self) -> int: ...

    @property
    def performance_count(self) -> int: ...

    def load(self, indices: Sequence[int]) -> None:
        """Bring these samples into memory (decode images, tokenize, ...). Called before timing."""
        ...

    def unload(self, indices: Sequence[int]) -> None:
        """Release samples loaded by :meth:`load`."""
        ...

    def get(self, index: int) -> Any:
        """The in-memory payload of a loaded sample, passed to the SUT inside a :class:`Query`."""
        ...


@dataclass(slots=True)
class Response:
    """The SUT's answer for one sample.

    Attributes:
        data: bytes written (hex) to ``mlperf_log_accuracy.json``; the encoding is the
            workload's (COCO boxes as float32, token ids as int32, JSON text, ...).
        n_tokens: output tokens for token workloads (0 otherwise).
        error: ``None`` on success, else a short reason; the sample counts as an error.
        sut_ns: time the query spent inside the SUT, measured where the SUT runs (a replica's
            own clock); 0 = not measured (then the harness measures the SUT call itself). Lets a
            report split latency into SUT time and harness + transport time.
        n_input_tokens: input (prompt) tokens as the SUT counted them (a server's
            ``usage.prompt_tokens``); 0 = not known (the workload's tokenizer may count them).
        finish_reason: why generation ended (``"stop"``, ``"length"``, ...), if the SUT knows.
    """

    data: bytes = b""
    n_tokens: int = 0
    error: str | None = None
    sut_ns: int = 0
    n_input_tokens: int = 0
    finish_reason: str | None = None


@dataclass(slots=True)
class Query:
    """One query handed to a SUT: the sample indices and their loaded payloads.

    A streaming SUT calls :meth:`first_token` when the first non-empty chunk arrives (LoadGen's
    ``FirstTokenComplete``) and may call :meth:`token` for every later chunk, so that the
    harness can report TTFT, TPOT and inter-token latencies on its own clock.

    When :attr:`want_token_data` is set (a sample of this query goes to the accuracy log), the
    SUT should also pass the first chunk's data, encoded as its :class:`Response` data (int32
    token ids for the LLM workloads), as ``first_token(data)`` or ``token(data)``: it becomes the
    ``token_data`` of the accuracy log, which MLPerf's TEST06 compares with the answer's start.
    A SUT passes data only when the flag is set and skips encoding it otherwise (the flag is off
    on the hot path; the token proxies of SUT replicas on Ray take no argument, and their flag is
    never set). Only single-sample queries carry it.
    """

    id: int
    indices: Sequence[int]
    samples: Sequence[Any]
    clock: Clock | None = None
    first_token_ns: int = 0
    token_ns: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    want_token_data: bool = False
    first_token_data: bytes | None = None

    def first_token(self, data: bytes | None = None) -> None:
        """Record the arrival of the first token (only the first call counts), and its ``data``
        when :attr:`want_token_data` is set."""
        if not self.first_token_ns and self.clock is not None:
            self.first_token_ns = self.clock.now_ns()
        if data is not None and self.want_token_data and self.first_token_data is None:
            self.first_token_data = bytes(data)

    def token(self, data: bytes | None = None) -> None:
        """Record the arrival time of one streamed chunk (the first one also sets TTFT and, when
        :attr:`want_token_data` is set, keeps ``data`` as the first token's data)."""
        if data is not None and self.want_token_data and self.first_token_data is None:
            self.first_token_data = bytes(data)
        if self.clock is None:
            return
        now = self.clock.now_ns()
        if not self.first_token_ns:
            self.first_token_ns = now
        if self.token_ns is None:
            self.token_ns = [now]
        else:
            self.token_ns.append(now)


@dataclass(frozen=True, slots=True)
class SUTContext:
    """What a SUT learns about the run before it starts.

    Attributes:
        workload: workload name (e.g. ``"yolo11"``).
        scenario: MLPerf scenario name (``"Offline"``, ``"Server"``, ...) or ``"Concurrency"``.
        mode: ``"PerformanceOnly"`` or ``"AccuracyOnly"``.
        workload_params: the workload's resolved parameters (dataset paths, ...), so a SUT may
            build its own copy of the sample library instead of receiving payloads.
        shard: index of the load-generator shard that owns this SUT adapter.
    """

    workload: str
    scenario: str
    mode: str
    workload_params: dict[str, Any] = field(default_factory=dict)
    shard: int = 0


@runtime_checkable
class SUT(Protocol):
    """A system under test, driven asynchronously by the loadgen.

    ``issue`` is awaited once per query; many calls are in flight at once, so it must not block
    the event loop (use ``await`` on I/O, or run blocking compute in a thread/actor).
    It returns one :class:`Response` per sample, in the order of ``query.indices``.

    ``max_batch`` is how many samples the SUT wants per call when the scenario lets the harness
    choose (Offline); ``max_inflight`` caps concurrent calls in Offline (0 = no cap).
    """

    name: str
    max_batch: int
    max_inflight: int

    async def start(self, ctx: SUTContext) -> None: ...

    async def issue(self, query: Query) -> Sequence[Response]: ...

    async def stop(self) -> None: ...
