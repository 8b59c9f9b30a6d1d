"""Multi-turn conversations in the closed loop: each Concurrency stream plays whole conversations.

A sample library opts in by providing three optional members (the chat workload does, for files
of conversations):

* ``conversations``: per conversation, the sample indices of its turns in order;
* ``turn_payload(index, answers)``: the payload of turn ``index`` given the answers
  (``Response.data``) of the conversation's earlier turns, in order: the history with the
  assistant's actual answers appended before the new user message;
* ``think_time_s`` (optional, default 0): the pause between an answer and the next turn.

Rules (what :class:`~raybench.core.scenarios.Concurrency` does with such a library):

* A stream draws conversations (seeded by ``(sample_index_rng_seed, stream)`` as single samples
  are, so the sequence does not depend on the shard) and plays each one turn by turn: turn
  ``t + 1`` is sent after turn ``t``'s answer arrived plus the think time. Its intended send time
  is that moment, so a turn's latency, TTFT and TPOT exclude the think time and the time the
  harness took to react shows as lateness. A conversation lives on the shard of its stream.
* A failed turn ends its conversation (the later turns are not sent; it counts as failed).
* A stream checks the stop rule (min duration and its share of min queries, as for single
  samples) after each conversation; once any stream has stopped the run, or at ``max_duration``
  or an abort, the other streams send no further turn: a conversation cut that way counts as
  neither completed nor failed (its sent turns count as requests).
* Conversation latency = completion of the last turn - intended send of the first turn (think
  times included), recorded in :attr:`RunStats.conversation`.
* Accuracy mode: every conversation is played once, conversations dealt round-robin to shards
  (``conversation % shards``); each turn's answer is logged with ``seq_id`` = its sample index.

Records: ``query_id`` is the conversation, ``turn`` the turn number from 1.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from raybench.core.plan import stream_samples

if TYPE_CHECKING:
    from raybench.core.loadgen import ShardRunner

__all__ = ["has_conversations", "play_conversations"]

_CHUNK = 256


def has_conversations(library: Any) -> bool:
    """Whether the sample library holds multi-turn conversations (see the module docstring)."""
    return bool(getattr(library, "conversations", None)) and callable(getattr(library, "turn_payload", None))


async def play_conversations(runner: ShardRunner, phase_i: int, streams: np.ndarray) -> None:
    """Run this shard's streams, each playing conversations until the stop rules hold."""
    lib = runner.library
    convs: list[list[int]] = [list(c) for c in lib.conversations]
    think_ns = int(float(getattr(lib, "think_time_s", 0.0) or 0.0) * 1e9)
    if runner.effective.accuracy:
        mine = list(range(runner.slice.shard, len(convs), runner.slice.shards))[::-1]
        workers = [_accuracy(runner, phase_i, convs, mine, think_ns) for _ in range(max(1, len(streams)))]
    else:
        share = len(streams) / max(1, runner.effective.concurrency)
        min_queries = int(np.ceil(runner.effective.min_query_count * share))
        workers = [_stream(runner, phase_i, convs, int(s), min_queries, think_ns) for s in streams]
    await asyncio.gather(*workers)


async def _play(runner: ShardRunner, phase_i: int, conv: int, turns: list[int], think_ns: int, ready: int,
                log: bool) -> int:
    """Play one conversation from ``ready`` (ns since T0); returns when its stream may go on."""
    lib, stats = runner.library, runner.rec.stats
    answers: list[bytes] = []
    start = -1
    done = ready
    for t, idx in enumerate(turns):
        if t and think_ns:
            await runner.clock.sleep_until(runner.t0 + ready)
        if runner.stopped or runner.check_limits(runner.now()):
            return runner.now()  # cut by the end of the run (max_duration, an abort): counted neither way
        intended = min(ready, runner.now())
        start = intended if start < 0 else start
        task, row = runner.spawn_turn(phase_i, idx, conv, t + 1, intended, lib.turn_payload(idx, answers), answers, log)
        await asyncio.gather(task, return_exceptions=True)
        done = runner.completed_at(row) or runner.now()
        if runner.buf.cols["error"][row]:
            stats.conversations_failed += 1
            return done
        ready = done + think_ns
    stats.conversations_ok += 1
    stats.conversation.record(max(0, done - start))
    return done


async def _stream(runner: ShardRunner, phase_i: int, convs: list[list[int]], stream: int, min_queries: int,
                  think_ns: int) -> None:
    ids = np.arange(len(convs), dtype=np.int64)
    seed = runner.slice.stream_seed
    pos = 0
    chunk = np.zeros(0, dtype=np.int64)
    ready = runner.now()
    while not runner.stopped:
        if pos % _CHUNK == 0:
            chunk = stream_samples(ids, seed, stream, _CHUNK, start=pos)
        conv = int(chunk[pos % _CHUNK])
        pos += 1
        ready = await _play(runner, phase_i, conv, convs[conv], think_ns, ready, log=False)
        now = runner.now()
        if runner.issued_queries >= min_queries and now >= runner.effective.min_duration_ms * 1_000_000:
            runner.request_stop("min duration and min queries met")
        runner.check_limits(now)


async def _accuracy(runner: ShardRunner, phase_i: int, convs: list[list[int]], queue: list[int], think_ns: int) -> None:
    while queue and not runner.stopped:
        conv = queue.pop()
        await _play(runner, phase_i, conv, convs[conv], think_ns, runner.now(), log=True)
