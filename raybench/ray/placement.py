"""Placement that explains itself: what a run asks of the cluster, whether it can ever fit, and
what is still waiting.

Two questions, answered before and while actors are created:

1. *Can any node ever hold this?* :func:`check_feasible` compares every request (one shard, one
   SUT replica, one replica placement group) with the **total** resources of the alive nodes,
   before any actor exists. A request no node could ever satisfy (``ray.replica_num_gpus=1`` on
   CPU-only nodes, a custom resource nobody has, a ``shard_label`` nobody carries, a bundle set
   bigger than the biggest node) is a config error: :class:`PlacementError`, one line naming the
   config field and the resource, e.g. ``ray.replica_num_gpus: no node has GPU >= 1 (nodes: 1,
   total GPU 0)``.
2. *What is it waiting for now?* :class:`PlacementWatcher` follows the actors and placement groups
   being started. An actor counts as *placed* once Ray has given it a worker process (the GCS
   actor table shows its pid); a placement group once it is ``CREATED``. Every few seconds it
   reports what is not placed yet, what it asks for and what the cluster has free; after
   ``ray.placement_timeout_s`` without placement it raises :class:`PlacementError` with the same
   description. Start-up after placement (model loading) is reported less often and bounded by
   the executor's ready timeout instead.

The feasibility part is pure (it reads node dicts shaped like ``ray.nodes()``), so it is tested
without Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ClusterError",
    "PlacementError",
    "PlacementWatcher",
    "Request",
    "check_feasible",
    "fmt_resources",
    "request_fields",
]

log = logging.getLogger(__name__)

StatusFn = Callable[[str], None]

# Resources Ray adds by itself; never part of a request we make, noise in messages.
_HIDDEN_PREFIXES = ("node:", "accelerator_type:")
_HIDDEN = frozenset({"memory", "object_store_memory"})


class ClusterError(ValueError):
    """The cluster cannot run this config (one line, naming the config field)."""


class PlacementError(ClusterError):
    """A shard, replica or placement group can never be placed, or was not placed in time."""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def fmt_resources(res: Mapping[str, float], keys: Sequence[str] | None = None) -> str:
    """``{CPU: 1, GPU: 0.5}``: the resources a request or node has (Ray's own keys hidden)."""
    names = list(keys) if keys is not None else [k for k in res if not _hidden(k)]
    return "{" + ", ".join(f"{k}: {_num(float(res.get(k, 0.0)))}" for k in names) + "}"


def _hidden(key: str) -> bool:
    return key in _HIDDEN or key.startswith(_HIDDEN_PREFIXES)


@dataclass
class Request:
    """One thing to place: a shard or replica actor, or a replica's placement group.

    Attributes:
        who: how messages name it (``shard 1``, ``replica 0``, ``replica 0's placement group``).
        kind: ``shard``, ``replica`` or ``bundles``; requests of one kind and demand are reported together.
        demand: resources it asks for (``{"CPU": 1.0}``); zero entries are dropped.
        fields: which config field asks for each resource (``{"CPU": "ray.shard_num_cpus"}``).
        node_id: a hard node affinity (``ray.placement=spread|node``), else ``None``.
        node_why: why it is pinned there, for messages.
        bundles: for ``kind == "bundles"``: the STRICT_PACK bundles that must share one node.
    """

    who: str
    kind: str
    demand: dict[str, float]
    fields: dict[str, str]
    node_id: str | None = None
    node_why: str = ""
    bundles: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.demand = {k: float(v) for k, v in self.demand.items() if v}

    def field_for(self, keys: Sequence[str]) -> str:
        """The config field(s) asking for ``keys`` (joined with ``/``)."""
        out: list[str] = []
        for k in keys:
            f = self.fields.get(k) or self.fields.get("*", "ray")
            f = f.replace("{key}", k)
            if f not in out:
                out.append(f)
        return "/".join(out) or "ray"


def request_fields(kind: str) -> dict[str, str]:
    """Which config field asks for which resource, per kind of request."""
    if kind == "shard":
        return {"CPU": "ray.shard_num_cpus", "*": "ray.shard_resources.{key}"}
    if kind == "replica":
        return {"CPU": "ray.replica_num_cpus", "GPU": "ray.replica_num_gpus", "*": "ray.replica_resources.{key}"}
    return {"*": "ray.replica_bundles"}


def _node_name(n: Mapping[str, Any]) -> str:
    return f"{n.get('NodeManagerAddress', '?')} ({str(n.get('NodeID', ''))[:8]})"


def _fits(demand: Mapping[str, float], have: Mapping[str, float]) -> bool:
    return all(have.get(k, 0.0) + 1e-9 >= v for k, v in demand.items())


def check_feasible(requests: Sequence[Request], nodes: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`PlacementError` for the first request no alive node could ever hold.

    Compares with each node's *total* resources (what it could offer if nothing else ran).
    Requests that fit somewhere but not all at once (three 1-CPU shards on a 2-CPU node) are not
    refused here: an autoscaler or a finishing job may still make room, and the watcher reports
    and times them out.

    Args:
        requests: what the run will create (see :class:`Request`).
        nodes: alive nodes as ``ray.nodes()`` returns them.
    """
    totals = [dict(n.get("Resources") or {}) for n in nodes]
    by_id = {n.get("NodeID"): n for n in nodes}
    for req in requests:
        demand = req.demand
        if req.kind == "bundles":
            demand = {}
            for b in req.bundles:
                for k, v in b.items():
                    demand[k] = demand.get(k, 0.0) + float(v)
            demand = {k: v for k, v in demand.items() if v}
        if not demand:
            continue
        if req.node_id is not None:
            node = by_id.get(req.node_id)
            have = dict((node or {}).get("Resources") or {})
            short = [k for k, v in demand.items() if have.get(k, 0.0) + 1e-9 < v]
            if short:
                where = _node_name(node) if node else req.node_id[:8]
                raise PlacementError(
                    f"{req.field_for(short)}: {req.who} needs {fmt_resources(demand, short)} but its node {where} "
                    f"has {fmt_resources(have, short)} in total{req.node_why}")
            continue
        if any(_fits(demand, t) for t in totals):
            continue
        # Name the resources that no single node has enough of; else the combination is the problem.
        short = [k for k, v in demand.items() if not any(t.get(k, 0.0) + 1e-9 >= v for t in totals)]
        count = f"nodes: {len(totals)}"
        if req.kind == "bundles":
            listed = ", ".join(fmt_resources(b, list(b)) for b in req.bundles)
            what = f"{req.who} needs {fmt_resources(demand, list(demand))} on one node (STRICT_PACK of {listed})"
            biggest = ", ".join(fmt_resources(t, list(demand)) for t in totals[:4])
            raise PlacementError(f"{req.field_for(list(demand))}: {what}; no node has that ({count}: {biggest})")
        if short:
            k = short[0]
            total = sum(t.get(k, 0.0) for t in totals)
            largest = max((t.get(k, 0.0) for t in totals), default=0.0)
            extra = f", largest {_num(largest)}" if len(totals) > 1 and largest else ""
            raise PlacementError(f"{req.field_for([k])}: no node has {k} >= {_num(demand[k])} "
                                 f"({count}, total {k} {_num(total)}{extra}) for {req.who}")
        keys = list(demand)
        nodes_desc = ", ".join(fmt_resources(t, keys) for t in totals[:4])
        raise PlacementError(f"{req.field_for(keys)}: no node has {fmt_resources(demand, keys)} at once for {req.who} "
                             f"({count}: {nodes_desc})")


def check_bundle_holds_actor(actor: Request, bundles: Sequence[Mapping[str, float]]) -> None:
    """A replica scheduled into bundle 0 of its placement group must fit inside that bundle.

    Ray never schedules an actor whose own request exceeds its bundle (``replica_num_cpus=1`` with
    ``replica_bundles=[{GPU: 1}]`` would wait forever), so this is refused up front.
    """
    if not bundles:
        return
    b0 = {k: float(v) for k, v in bundles[0].items()}
    short = [k for k, v in actor.demand.items() if b0.get(k, 0.0) + 1e-9 < v]
    if short:
        raise PlacementError(
            f"{actor.field_for(short)}: {actor.who} asks for {fmt_resources(actor.demand, short)} but runs inside "
            f"bundle 0 of ray.replica_bundles, {fmt_resources(b0, list(b0))}, which cannot hold it (add "
            f"{', '.join(short)} to that bundle or lower {actor.field_for(short)})")


# --------------------------------------------------------------------------- watching
@dataclass
class _Item:
    req: Request
    ref: Any  # resolves when it is ready (start()/prepare())
    handle: Any = None  # the actor
    pg: Any = None  # the placement group it runs in
    pg_req: Request | None = None  # that group's bundles (what it waits for while the group is pending)
    created: float = field(default_factory=time.monotonic)
    placed_at: float | None = None
    done: bool = False
    waiting_on: Request | None = None  # set by each poll: the actor, or its placement group


class PlacementWatcher:
    """Waits for actors and placement groups to become ready, saying what they wait for.

    Args:
        status: where the lines go (the CLI prints them; default: the module logger).
        timeout_s: ``ray.placement_timeout_s``: the longest anything may stay unplaced.
        ready_timeout_s: the longest anything may take after placement (SUT start, model load).
        first_report_s / every_s: when the first "waiting" line appears, and how often it repeats.
        run_needs: the whole run's resources, shown next to what the cluster has.
    """

    def __init__(self, status: StatusFn | None, timeout_s: float, ready_timeout_s: float,
                 first_report_s: float = 3.0, every_s: float = 5.0, starting_every_s: float = 15.0,
                 run_needs: Mapping[str, float] | None = None) -> None:
        self.status = status or (lambda msg: log.warning("%s", msg))
        self.timeout_s = timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.first_report_s = first_report_s
        self.every_s = every_s
        self.starting_every_s = starting_every_s
        self.run_needs = dict(run_needs or {})
        self.unplaced: list[Request] = []  # after each poll: what still waits for resources
        self._items: list[_Item] = []

    def phase(self, noun: str) -> str:
        """What the current :meth:`wait` is at, for an interrupt message.

        ``waiting for 1 shard to be placed`` / ``waiting for 2 shards to start`` (states re-read now).
        """
        left = [it for it in self._items if not it.done]
        if not left:
            return f"starting the {noun}s"
        unplaced = [it for it in left if it.placed_at is None and not _is_placed(it)]
        items, what = (unplaced, "to be placed") if unplaced else (left, "to start")
        n = len(items)
        return f"waiting for {n} {noun}{'s' if n != 1 else ''} {what}"

    def wait(self, items: list[_Item], on_ready: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Block until every item's ref resolves; returns their values in order.

        Raises:
            PlacementError: something stayed unplaced for ``timeout_s``.
            RuntimeError: something placed did not get ready within ``ready_timeout_s``.
            Whatever ``ray.get`` raises for a failed ref (the caller words it).
        """
        import ray

        self._items = items
        values: list[Any] = [None] * len(items)
        pending = {it.ref: i for i, it in enumerate(items)}
        start = time.monotonic()
        next_report = start + self.first_report_s
        next_starting = start + self.starting_every_s
        next_check = start
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            for ref in done:
                i = pending.pop(ref)
                values[i] = ray.get(ref)  # raises the actor's / task's error as is
                items[i].done = True
                if on_ready is not None:
                    on_ready(i, values[i])
            if not pending:
                break
            now = time.monotonic()
            if now < next_check:
                continue
            next_check = now + 1.0
            waiting = [it for it in items if not it.done]
            for it in waiting:
                if it.placed_at is None and _is_placed(it):
                    it.placed_at = now
            unplaced = [it for it in waiting if it.placed_at is None]
            self.unplaced = [it.waiting_on or it.req for it in unplaced]
            late = [it for it in unplaced if now - it.created > self.timeout_s]
            if late:
                raise PlacementError(self._timeout_message(late, unplaced))
            slow = [it for it in waiting if it.placed_at is not None and now - it.placed_at > self.ready_timeout_s]
            if slow:
                raise RuntimeError(f"{slow[0].req.who} was placed but not ready within {self.ready_timeout_s:g} s "
                                   f"(RAYBENCH_READY_TIMEOUT_S)")
            if unplaced and now >= next_report:
                for line in self._waiting_lines(unplaced, now - start):
                    self.status(line)
                next_report = now + self.every_s
            starting = [it for it in waiting if it.placed_at is not None]
            if starting and now >= next_starting:
                names = _names([it.req for it in starting])
                self.status(f"{names}: placed, still starting ({now - start:.0f} s)")
                next_starting = now + self.starting_every_s
        self.unplaced = []
        return values

    # ------------------------------------------------------------------ wording
    def _groups(self, unplaced: Sequence[_Item]) -> list[tuple[list[Request], dict[str, float]]]:
        groups: dict[tuple[str, tuple[tuple[str, float], ...], str | None], list[Request]] = {}
        for it in unplaced:
            req = it.waiting_on or it.req
            d = _demand(req)
            groups.setdefault((req.kind, tuple(sorted(d.items())), req.node_id), []).append(req)
        return [(reqs, dict(key[1])) for key, reqs in groups.items()]

    def _describe(self, reqs: list[Request], demand: dict[str, float]) -> tuple[str, str]:
        """(the config field to blame, the description) for requests sharing one demand."""
        import ray

        keys = list(demand)
        field_name = reqs[0].field_for(keys)
        each = " each" if len(reqs) > 1 else ""
        where = f" on node {reqs[0].node_id[:8]}" if reqs[0].node_id else ""
        try:
            free = ray.available_resources()
            total = ray.cluster_resources()
        except Exception:  # a status line is not worth failing over
            free, total = {}, {}
        if reqs[0].node_id is None and total and _fits(demand, free):
            # The resources are there: Ray is starting the worker (or building its runtime_env).
            what = (f"not started yet although {fmt_resources(demand, keys)}{each} is free "
                    f"(Ray is starting a worker process or its runtime_env)")
            field_name = "ray.placement_timeout_s"
        else:
            what = f"waiting for {fmt_resources(demand, keys)}{each}{where} ({field_name})"
        parts = [f"{_names(reqs)}: {what}"]
        if total:
            parts.append(f"cluster has {fmt_resources(free, keys)} free of {fmt_resources(total, keys)}")
        needs = {k: v for k, v in self.run_needs.items() if k in demand}
        if needs:
            parts.append(f"this run asks for {fmt_resources(needs)} in all")
        return field_name, "; ".join(parts)

    def _waiting_lines(self, unplaced: Sequence[_Item], waited: float) -> list[str]:
        tail = f" [{waited:.0f} s; gives up after ray.placement_timeout_s={self.timeout_s:g} s]"
        return [self._describe(reqs, demand)[1] + tail for reqs, demand in self._groups(unplaced)]

    def _timeout_message(self, late: Sequence[_Item], unplaced: Sequence[_Item]) -> str:
        reqs, demand = self._groups(late)[0]
        field_name, text = self._describe(reqs, demand)
        return (f"{field_name}: not placed within ray.placement_timeout_s={self.timeout_s:g} s "
                f"({len(unplaced)} still waiting): {text}")


def _demand(req: Request) -> dict[str, float]:
    if req.kind != "bundles":
        return dict(req.demand)
    out: dict[str, float] = {}
    for b in req.bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + float(v)
    return {k: v for k, v in out.items() if v}


def _names(reqs: Sequence[Request]) -> str:
    """``shard 1`` / ``shards 1, 2`` / ``replica 0``."""
    if len(reqs) == 1:
        return reqs[0].who
    head = reqs[0].who.split(" ", 1)
    if all(r.who.startswith(head[0] + " ") for r in reqs) and len(head) == 2:
        nums = [r.who.split(" ", 1)[1] for r in reqs]
        shown = ", ".join(nums[:8]) + (f" (+{len(nums) - 8} more)" if len(nums) > 8 else "")
        return f"{head[0]}s {shown}"
    return ", ".join(r.who for r in reqs[:8])


def _is_placed(it: _Item) -> bool:
    """Has Ray given this actor a worker (its pid is known), after its placement group got its bundles?"""
    import ray

    try:
        if it.pg is not None and ray.util.placement_group_table(it.pg).get("state") != "CREATED":
            it.waiting_on = it.pg_req
            return False
        it.waiting_on = it.req
        entry = ray._private.state.actors(actor_id=it.handle._actor_id.hex())
        return bool(entry) and (entry.get("State") == "ALIVE" or bool(entry.get("Pid")))
    except Exception:  # the GCS tables are advisory here; assume placed rather than fail a run
        return True


def watch_item(req: Request, ref: Any, handle: Any, pg: Any = None, pg_req: Request | None = None) -> _Item:
    """An actor for :meth:`PlacementWatcher.wait` to follow (``ref`` resolves when it is ready)."""
    return _Item(req=req, ref=ref, handle=handle, pg=pg, pg_req=pg_req)
