"""Eager coroutine start: run a coroutine up to its first suspension now, a Task only if it suspends.

Python 3.12 has this built in (``asyncio.eager_task_factory``); raybench supports 3.11. Starting
eagerly matters on the hot path: the callee (a SUT, a replica's handler) sees the request at once
instead of one event-loop turn later, and a call that finishes without suspending costs no Task.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_eagerly"]


def start_eagerly(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first suspends; ``None`` if it finished, else the Task that goes on with it.

    Exceptions the coroutine raises before suspending propagate to the caller.
    """
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    return loop.create_task(_resume(coro, pending))


@types.coroutine
def _continue(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    """Drive ``coro``, which has already yielded ``pending``, to its end under the current task."""
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown into the coroutine, as a Task would
            try:
                pending = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                pending = coro.send(sent)
            except StopIteration:
                return


async def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> None:
    await _continue(coro, pending)
