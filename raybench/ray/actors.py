"""Ray actors: a load-generator shard, a SUT replica, and the shard-side replica pool.

``LoadGenShard`` is an async actor running :class:`~raybench.core.loadgen.ShardRunner` on its
slice of the plan; many queries are in flight on its event loop. ``SUTReplica`` hosts any
reference SUT class (the same class the in-process executor uses) with its own resources.
``ReplicaPoolSUT`` is the SUT adapter a shard talks to: it sends each query to the replica
with the fewest outstanding queries from this shard, over the authenticated direct channel
(:mod:`raybench.ray.direct`, the default) or as Ray actor calls (``ray.transport=ray``); tokens
come back as they are produced (direct frames, or a Ray streaming generator) so TTFT is measured
on the shard's own clock.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import ray

from raybench.core.loadgen import ShardRunner
from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.records import ShardReport
from raybench.core.spec import load_object
from raybench.run import ShardJob

__all__ = ["LoadGenShard", "ReplicaPoolSUT", "SUTError", "SUTReplica"]


def _node_label() -> str:
    """``hostname/node-ip/node-id[:8]``: names the machine in placements and failure reasons.

    The IP is there because hostnames need not tell nodes apart (containers or network namespaces
    that share one, cloud images with a default name); the node id prefix matches ``system.json``.
    """
    try:
        node = ray.get_runtime_context().get_node_id()[:8]
        ip = ray.util.get_node_ip_address()
    except Exception:  # pragma: no cover - outside Ray
        node, ip = "?", "?"
    return f"{socket.gethostname()}/{ip}/{node}"


def _node_id() -> str:
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - outside Ray
        return ""


def _ray_sockets_dir() -> str | None:
    """Ray's own socket directory for this session (removed with Ray's temporary files), if known."""
    try:
        path = os.path.join(ray._private.worker._global_node.get_session_dir_path(), "sockets")  # noqa: SLF001
    except Exception:
        return None
    return path if os.path.isdir(path) else None


def _tighten_gil_switching() -> None:
    """Ray workers run helper threads beside the actor's event loop; with CPython's default 5 ms
    GIL switch interval a timer or socket wake-up on the loop can wait that long for the GIL.
    0.2 ms keeps wake-ups prompt at a negligible throughput cost."""
    sys.setswitchinterval(0.0002)


class _StreamQuery(Query):
    """A query inside a replica whose token marks are forwarded to the shard."""

    __slots__ = ("_cb",)

    def first_token(self, data: Any = None) -> None:
        self._cb()

    def token(self, data: Any = None) -> None:
        # First-token data (TEST06) is not forwarded from a replica: ``want_token_data`` is never set
        # here, so SUTs do not produce it; a SUT that passes it anyway must not fail.
        self._cb()


async def _timed_issue(sut: Any, query: Query) -> list[Response]:
    """The SUT's answer with the time it took here (this replica's clock), for the overhead split."""
    start = time.monotonic_ns()
    resps = list(await sut.issue(query))
    took = time.monotonic_ns() - start
    for r in resps:
        r.sut_ns = r.sut_ns or took
    return resps


def _direct_handler(sut: Any) -> Any:
    """The replica's per-query handler for the direct channel: one coroutine per query.

    A plain closure rather than an actor method: Ray wraps every method of an actor class in
    an ``async`` tracing shim, which would add a coroutine frame and a keyword dict per query.
    """

    async def issue(qid: int, indices: list[int], samples: list[Any], on_token: Any) -> list[Response]:
        if on_token is None:
            query = Query(id=qid, indices=indices, samples=samples)
        else:
            query = _StreamQuery(id=qid, indices=indices, samples=samples)
            query._cb = on_token
        return await _timed_issue(sut, query)

    return issue


@ray.remote
class SUTReplica:
    """One replica of a SUT (any class implementing the SUT protocol), as an async actor."""

    def __init__(self, entry: str, params: dict[str, Any], replica: int) -> None:
        _tighten_gil_switching()
        self.replica = replica
        self.sut = load_object(entry)(dict(params))
        self.node = _node_label()
        self._server: Any = None

    async def start(
        self, ctx: SUTContext, direct_host: str | None = None, secret: bytes | None = None
    ) -> dict[str, Any]:
        """Start the SUT and, with ``direct_host``, the direct channel's listener.

        Args:
            ctx: the SUT's context (replica index, run settings).
            direct_host: ``None`` for Ray actor calls only; ``"127.0.0.1"`` on a one-node cluster;
                ``"node"`` to bind this node's IP (multi-node clusters).
            secret: the run secret every shard connection must prove (required with
                ``direct_host``); it arrives through Ray and is never returned or logged.

        Returns:
            The replica's info for the shards and ``system.json`` (``direct`` is ``(host, port)``).
        """
        await self.sut.start(ctx)
        # What the SUT loaded (a model, its tables) stays out of every later garbage collection:
        # a full collection walking it would pause the replica's loop for milliseconds mid-run.
        gc.collect()
        gc.freeze()
        direct = None
        if direct_host:
            from raybench.ray.direct import serve_direct

            if not secret:
                raise ValueError("the direct transport needs the run secret")
            host = ray.util.get_node_ip_address() if direct_host == "node" else direct_host
            # A unix socket beside the TCP port: shards on this node use it (less kernel work per message).
            self._server = await serve_direct(host, _direct_handler(self.sut), secret, unix=True,
                                              unix_dir=_ray_sockets_dir())
            direct = (host, self._server.port)
        info = getattr(self.sut, "info", None)
        return {
            "direct": direct,
            "direct_unix": self._server.unix_path if self._server is not None else None,
            "replica": self.replica,
            "node": self.node,
            "node_id": _node_id(),
            "name": getattr(self.sut, "name", type(self.sut).__name__),
            "max_batch": int(getattr(self.sut, "max_batch", 1) or 1),
            "max_inflight": int(getattr(self.sut, "max_inflight", 0) or 0),
            "streaming": bool(getattr(self.sut, "streaming", False)),
            "pid": os.getpid(),
            # What the SUT reports about itself (placement, memory), as plain JSON for system.json.
            "sut_info": json.loads(json.dumps(info(), default=str)) if callable(info) else None,
        }

    async def issue(self, qid: int, indices: list[int], samples: list[Any]) -> list[Response]:
        return await _timed_issue(self.sut, Query(id=qid, indices=indices, samples=samples))

    async def issue_stream(self, qid: int, indices: list[int], samples: list[Any]) -> AsyncIterator[Any]:
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        q = _StreamQuery(id=qid, indices=indices, samples=samples)
        q._cb = lambda: events.put_nowait(("tok", None))

        async def work() -> None:
            try:
                events.put_nowait(("done", await _timed_issue(self.sut, q)))
            except Exception as exc:
                events.put_nowait(("err", f"{type(exc).__name__}: {exc}"))

        task = asyncio.ensure_future(work())
        try:
            while True:
                kind, val = await events.get()
                yield (kind, val)
                if kind in ("done", "err"):
                    return
        finally:
            task.cancel()

    def transport_stats(self) -> dict[str, Any]:
        """The direct channel's counters (connections accepted, rejected and from where).

        Read by the driver at the end of the run, before the replica is killed, so that attempts
        to reach the port without the run secret show up in the result.
        """
        out: dict[str, Any] = {"replica": self.replica, "node": self.node, "direct": self._server is not None}
        if self._server is not None:
            out.update(self._server.stats())
        return out

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.sut.stop()


class SUTError(RuntimeError):
    """A SUT replica failed (``fatal`` when no replica is left)."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class ReplicaPoolSUT:
    """The shard's SUT adapter over N replica actors (least outstanding queries first).

    Args:
        handles: the replica actors.
        infos: what each replica's ``start()`` returned.
        secret: the run secret for the direct channel.
        node_id: the Ray node this shard runs on; a replica on the same node is reached over its
            unix socket (``direct_unix``) when it has one.
    """

    def __init__(
        self, handles: Sequence[Any], infos: Sequence[dict[str, Any]], secret: bytes | None = None,
        node_id: str | None = None,
    ) -> None:
        if not handles:
            raise ValueError("ReplicaPoolSUT needs at least one replica")
        self.handles = list(handles)
        self.infos = list(infos)
        self._secret = secret
        self._node_id = node_id
        first = self.infos[0]
        self.name = str(first["name"])
        self.max_batch = int(first["max_batch"])
        per = int(first["max_inflight"])
        self.max_inflight = per * len(self.handles) if per else 0
        self.streaming = bool(first["streaming"])
        self.outstanding = [0] * len(self.handles)
        self.dead: dict[int, str] = {}
        self.clients: list[Any] = []

    async def start(self, ctx: SUTContext) -> None:
        """With the direct transport, open and authenticate one connection per replica (before T0)."""
        if all(info.get("direct") for info in self.infos):
            from raybench.ray.direct import DirectClient

            if not self._secret:
                raise ValueError("the replicas serve the direct transport but this shard has no run secret")
            for i, info in enumerate(self.infos):
                host, port = info["direct"]
                local = bool(self._node_id) and info.get("node_id") == self._node_id
                c = DirectClient(host, port, f"SUT replica {i} on {info['node']}", self._secret,
                                 unix_path=info.get("direct_unix") if local else None)
                await c.connect()
                self.clients.append(c)

    async def stop(self) -> None:
        for c in self.clients:
            await c.close()

    def _pick(self) -> int:
        if len(self.outstanding) == 1 and not self.dead:
            return 0
        best = -1
        for i, n in enumerate(self.outstanding):
            if i in self.dead:
                continue
            if best < 0 or n < self.outstanding[best]:
                best = i
        if best < 0:
            reasons = "; ".join(f"replica {i}: {r}" for i, r in sorted(self.dead.items()))
            raise SUTError(f"all SUT replicas died ({reasons})", fatal=True)
        return best

    async def issue(self, query: Query) -> Sequence[Response]:
        i = self._pick()
        h = self.handles[i]
        self.outstanding[i] += 1
        try:
            indices, samples = list(query.indices), list(query.samples)
            if self.clients:
                try:
                    return await self.clients[i].request(query.id, indices, samples, query if self.streaming else None)
                except ConnectionError as exc:
                    self.dead[i] = "died (connection lost)"
                    raise SUTError(f"SUT replica {i} on {self.infos[i]['node']} died ({exc})",
                                   fatal=len(self.dead) == len(self.handles)) from None
                except RuntimeError as exc:
                    if getattr(exc, "fatal", False):  # the SUT says this replica is gone (e.g. its server died)
                        self.dead[i] = str(exc)[:200]
                    raise SUTError(f"replica {i} on {self.infos[i]['node']}: {str(exc)[:200]}",
                                   fatal=len(self.dead) == len(self.handles)) from None
            if self.streaming:
                resps: list[Response] = []
                async for ref in h.issue_stream.remote(query.id, indices, samples):
                    kind, val = await ref
                    if kind == "tok":
                        query.token()
                    elif kind == "done":
                        resps = val
                    else:
                        raise SUTError(f"replica {i} on {self.infos[i]['node']}: {val}")
                return resps
            return await h.issue.remote(query.id, indices, samples)
        except ray.exceptions.RayActorError as exc:
            why = f"died ({type(exc).__name__})"
            self.dead[i] = why
            raise SUTError(f"SUT replica {i} on {self.infos[i]['node']} {why}", fatal=len(self.dead) == len(self.handles)) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            msg = f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}"
            if getattr(cause, "fatal", False):
                self.dead[i] = msg
            raise SUTError(f"replica {i} on {self.infos[i]['node']}: {msg}", fatal=len(self.dead) == len(self.handles)) from None
        finally:
            self.outstanding[i] -= 1


@ray.remote
class LoadGenShard:
    """A load-generator shard: runs the core loadgen on one slice of the plan."""

    def __init__(self, job: ShardJob, replicas: list[Any], replica_infos: list[dict[str, Any]],
                 direct_secret: bytes | None = None, wall_offset_ns: int = 0) -> None:
        _tighten_gil_switching()
        self.job = job
        self.replicas = replicas
        self.replica_infos = replica_infos
        self._direct_secret = direct_secret  # its own argument, never inside the replica infos
        # Test only (RAYBENCH_TEST_WALL_OFFSET_NS): pretend this host's wall clock is off by this much.
        self._wall_offset_ns = int(wall_offset_ns)
        self.node = _node_label()
        self.runner: ShardRunner | None = None
        self._snaps: list[dict[str, Any]] = []
        self._clock: dict[str, Any] | None = None
        self._clock_set: asyncio.Event | None = None

    async def prepare(self) -> dict[str, Any]:
        from raybench.core.clock import MonotonicClock
        from raybench.registry import make_library, make_sut

        job = self.job
        lib = make_library(job.workload, dict(job.workload_params))
        if self.replicas:
            sut = ReplicaPoolSUT(self.replicas, self.replica_infos, self._direct_secret, _node_id())
            # Token workloads need every chunk's arrival on this shard's clock.
            sut.streaming = sut.streaming or job.slice.use_token_latencies
        else:
            sut = make_sut(job.sut, dict(job.sut_params))
        self.runner = ShardRunner(job.slice, sut, lib, MonotonicClock(), on_snapshot=self._snaps.append, node=self.node,
                                  **job.runner_options())
        await self.runner.prepare()
        return {"shard": job.slice.shard, "node": self.node, "node_id": ray.get_runtime_context().get_node_id()}

    def _wall_ns(self) -> int:
        return time.time_ns() + self._wall_offset_ns

    def wall_clock_ns(self) -> int:
        """This shard's wall clock now (the driver times the round trip to estimate skew)."""
        return self._wall_ns()

    async def clock_info(self, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """How this shard converted T0 (waits for :meth:`run` to have done it; ``None`` if it never did)."""
        if self._clock is None:
            if self._clock_set is None:
                self._clock_set = asyncio.Event()
            try:
                await asyncio.wait_for(self._clock_set.wait(), timeout_s)
            except TimeoutError:
                return None
        return self._clock

    async def run(self, t0_wall_ns: int) -> ShardReport:
        assert self.runner is not None, "prepare() first"
        # Convert the broadcast wall-clock T0 to this process's monotonic clock once; from then
        # on every timestamp is monotonic and local.
        mono, wall = time.monotonic_ns(), self._wall_ns()
        t0 = mono + (t0_wall_ns - wall)
        self._clock = {"t0_seen_wall_ns": wall, "t0_lead_ns": t0_wall_ns - wall, "t0_mono_ns": t0,
                       "mono_wall_offset_ns": wall - mono, "wall_offset_test_ns": self._wall_offset_ns}
        if self._clock_set is not None:
            self._clock_set.set()
        try:
            rep = await self.runner.run(t0)
        finally:
            await self.runner.close()
        rep.t0_wall_ns = t0_wall_ns
        rep.node = self.node
        return rep

    async def progress(self, with_stats: bool = True) -> tuple[list[dict[str, Any]], Any]:
        """Snapshots since the last call (live progress) and, with ``with_stats``, the statistics so
        far (kept by the driver, so that a shard that dies later does not take what it measured
        with it). A coroutine, so it runs on the shard's event loop, never beside it in a thread."""
        out, self._snaps[:] = list(self._snaps), []
        stats = self.runner.current_stats() if with_stats and self.runner is not None else None
        return out, stats

    def file_size(self, path: str) -> int:
        """Size of a file this shard wrote (its records file)."""
        return os.path.getsize(path)

    def read_file(self, path: str, offset: int, n: int) -> bytes:
        """``n`` bytes of a file this shard wrote, from ``offset``."""
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    async def stop(self, reason: str) -> None:
        """Abort the run (on the shard's event loop, like everything that touches the runner)."""
        if self.runner is not None:
            self.runner.abort(reason)
