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

__all__ = ["Interrupted", "interrupt_exit_code", "interrupt_reason", "interrupts", "reclaim_sigterm"]

_REASONS = {signal.SIGINT: "interrupted by the user (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM, with the reason a run records and the exit code to use."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(_REASONS.get(signal.Signals(signum), f"signal {signum}"))
        self.signum = int(signum)
        self.reason = _REASONS.get(signal.Signals(signum), f"signal {signum}")
        self.exit_code = 128 + int(signum)


def interrupt_reason(exc: BaseException) -> str:
    """The reason to record for an interrupt.

    Some libraries re-raise a plain ``KeyboardInterrupt`` for whatever interrupted them (Ray's
    ``ray.wait`` does), so a SIGTERM received inside :func:`interrupts` is remembered too.
    """
    if hasattr(exc, "reason"):
        return str(exc.reason)
    return _REASONS[signal.SIGTERM] if _terminated[0] else _REASONS[signal.SIGINT]


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM."""
    if hasattr(exc, "exit_code"):
        return int(exc.exit_code)
    return 128 + (signal.SIGTERM if _terminated[0] else signal.SIGINT)


def _on_term(signum: int, frame: FrameType | None) -> None:
    _terminated[0] = True
    raise Interrupted(signum)


_active = [0]
_terminated = [False]


@contextmanager
def interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` like Ctrl-C raises KeyboardInterrupt."""
    previous = signal.signal(signal.SIGTERM, _on_term)
    _active[0] += 1
    _terminated[0] = False
    try:
        yield
    finally:
        _active[0] -= 1
        signal.signal(signal.SIGTERM, previous)


def reclaim_sigterm() -> None:
    """Put the SIGTERM handler back after a library replaced it (``ray.init`` installs one that
    exits at once), when inside :func:`interrupts` and on the main thread."""
    import threading

    if _active[0] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_term)
