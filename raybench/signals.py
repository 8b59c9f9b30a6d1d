"""SIGINT and SIGTERM mean the same thing to a run: stop, keep what was measured, say why.

``timeout``, Slurm, Kubernetes and ``ray job stop`` send SIGTERM; a user at a terminal sends
SIGINT (Ctrl-C). Inside :func:`interrupts`, SIGTERM raises :class:`Interrupted` in the main thread
exactly where Ctrl-C would raise ``KeyboardInterrupt``, so every interrupt path (the executors
stop their shards and write the run directory) handles both; the exception carries the reason
to record and the exit code (128 + signal number) to use when nothing was measured yet.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "interrupt_reason", "interrupts"]

_REASONS = {signal.SIGINT: "interrupted by the user (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM, with the reason a run records and the exit code to use."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(_REASONS.get(signal.Signals(signum), f"signal {signum}"))
        self.signum = int(signum)
        self.reason = _REASONS.get(signal.Signals(signum), f"signal {signum}")
        self.exit_code = 128 + int(signum)


def interrupt_reason(exc: BaseException) -> str:
    """The reason to record for an interrupt (a plain ``KeyboardInterrupt`` is Ctrl-C)."""
    return getattr(exc, "reason", _REASONS[signal.SIGINT])


@contextmanager
def interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` like Ctrl-C raises KeyboardInterrupt."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
