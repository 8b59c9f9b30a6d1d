"""SIGINT and SIGTERM mean the same thing to a run: stop, keep what was measured, say why.

``timeout``, Slurm, Kubernetes and ``ray job stop`` send SIGTERM; a user at a terminal sends
SIGINT (Ctrl-C). Inside :func:`interrupts`, SIGTERM raises :class:`Interrupted` in the main thread
exactly where Ctrl-C would raise ``KeyboardInterrupt``, so every interrupt path (the executors
stop their shards and write the run directory) handles both; the exception carries the reason
to record and the exit code (128 + signal number) to use when nothing was measured yet.

Ray's ``ray.get``/``ray.wait`` re-raise whatever a signal handler raised as a *plain*
``KeyboardInterrupt``, so a SIGTERM that lands while the driver waits on Ray would read as
Ctrl-C; the handlers therefore also note the signal, and :func:`signum_of` /
:func:`interrupt_reason` fall back to it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "interrupt_reason", "interrupted_by", "interrupts", "last_signal", "note_signal",
           "signum_of"]

_REASONS = {signal.SIGINT: "interrupted by the user (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM, with the reason a run records and the exit code to use."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(_REASONS.get(signal.Signals(signum), f"signal {signum}"))
        self.signum = int(signum)
        self.reason = _REASONS.get(signal.Signals(signum), f"signal {signum}")
        self.exit_code = 128 + int(signum)


_last: list[int] = []


def note_signal(signum: int) -> None:
    """Remember ``signum`` as the last interrupt signal this process received."""
    _last[:] = [int(signum)]


def last_signal() -> int:
    """The last SIGINT/SIGTERM noted (SIGINT if none)."""
    return _last[0] if _last else int(signal.SIGINT)


def signum_of(exc: BaseException) -> int:
    """The signal behind an interrupt: its own ``signum``, else the last one noted."""
    num = getattr(exc, "signum", None)
    return int(num) if num is not None else last_signal()


def interrupt_reason(exc: BaseException) -> str:
    """The reason to record for an interrupt (a plain ``KeyboardInterrupt``: the last signal noted)."""
    num = signum_of(exc)
    return getattr(exc, "reason", None) or _REASONS.get(signal.Signals(num), f"signal {num}")


def interrupted_by(reasons: Iterable[str]) -> int | None:
    """The signal that stopped a finished run, read from its invalid reasons (``None``: not stopped).

    A run absorbs Ctrl-C/SIGTERM to write what it measured; a series of runs (sweep, peak search)
    uses this to stop instead of starting the next run.
    """
    for reason in reasons:
        for signum, why in _REASONS.items():
            if why in reason:
                return int(signum)
    return None


@contextmanager
def interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` like Ctrl-C raises KeyboardInterrupt
    (both are noted for :func:`last_signal`)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        note_signal(signum)
        raise Interrupted(signum)

    def on_int(signum: int, frame: FrameType | None) -> None:
        note_signal(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # not where SIGINT is ignored or handled already
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)

