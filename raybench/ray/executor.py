"""``RayExecutor``: shards as actors on the load nodes, SUT replicas as actors with their resources.

Data flow (DESIGN.md): the driver builds the plan and partitions it; each shard's job travels through
the object store; the executor starts the SUT replicas (model loading happens here, before any
timing), places one shard per load node, waits until every shard and replica is ready, then
broadcasts a start time T0 a little in the future on the wall clock. Each shard converts T0 to
its own monotonic clock once and from then on only reads that clock. While the run goes, the
driver polls every shard once a second for progress snapshots; at the end it collects the
reports. A shard or replica that dies, a SUT that never answers, or Ctrl-C all end the run by its
deadline with everything measured so far.

Per-query messages go over the direct channel (:mod:`raybench.ray.direct`) on every cluster shape
unless ``ray.transport=ray``: it adds ~0.07 ms per query where a Ray actor call adds ~2.6 ms
across nodes. The driver creates a fresh secret per run and hands it through Ray to the replicas
and shards only (never to a result file or log); every connection proves it before any payload is
deserialised, and the replicas count the connections they drop (:meth:`RayExecutor.result_extra`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from raybench.config import RayConfig
from raybench.core.aggregate import RunStats
from raybench.core.records import ShardReport
from raybench.ray.actors import LoadGenShard, SUTReplica
from raybench.run import PreparedRun, ProgressFn, ShardJob
from raybench.signals import interrupt_reason, reclaim_sigterm

__all__ = ["RayExecutor", "load_nodes"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = float(os.environ.get("RAYBENCH_READY_TIMEOUT_S", "3600"))
_REPORT_GRACE_S = 60.0
_CHUNK = 8 * 2**20
_STATS_TIMEOUT_S = 5.0  # end-of-run transport counters: a nicety, never worth holding a run up


def _new_run_secret() -> bytes:
    """32 random bytes shared by this run's shards and replicas (the direct channel's key)."""
    return secrets.token_bytes(32)


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def load_nodes(cfg: RayConfig) -> list[dict[str, Any]]:
    """Nodes eligible for load-generator shards.

    A node qualifies if it has every resource in ``shard_resources`` and, with ``shard_label``
    (``key=value``), that node label. Without either, GPU nodes are skipped whenever a CPU-only
    node exists (load generators never compete with the SUT for a GPU host unless asked).
    """
    nodes = _alive_nodes()
    if cfg.shard_resources:
        nodes = [n for n in nodes if all(n["Resources"].get(k, 0) >= v for k, v in cfg.shard_resources.items())]
    if cfg.shard_label:
        key, _, val = cfg.shard_label.partition("=")
        nodes = [n for n in nodes if str((n.get("Labels") or {}).get(key)) == val]
    elif not cfg.shard_resources:
        cpu_only = [n for n in nodes if not n["Resources"].get("GPU")]
        if cpu_only:
            nodes = cpu_only
    nodes.sort(key=lambda n: (n["NodeManagerAddress"], n["NodeID"]))
    return nodes


class RayExecutor:
    """Runs shard slices as ``LoadGenShard`` actors and the SUT as ``SUTReplica`` actors.

    Args:
        cfg: placement and resources (``RunConfig.ray``). With ``address=None`` (and no
            RAY_ADDRESS) an embedded local Ray is started and shut down at the end.
    """

    def __init__(self, cfg: RayConfig | None = None) -> None:
        self.cfg = cfg or RayConfig()
        self._owns_ray = False
        self._nodes: list[dict[str, Any]] = []
        self.live_shards: list[Any] = []
        self.live_replicas: list[Any] = []
        self.placements: list[dict[str, Any]] = []
        self.replica_infos: list[dict[str, Any]] = []
        self._transport: dict[str, Any] = {}

    # ------------------------------------------------------------------ cluster
    def _init(self) -> None:
        if ray.is_initialized():
            return
        address = self.cfg.address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True, "configure_logging": False}
        if self.cfg.runtime_env:
            kwargs["runtime_env"] = self.cfg.runtime_env
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(address="local", include_dashboard=False, object_store_memory=512 * 2**20)  # never attach to /tmp/ray's latest cluster
            self._owns_ray = True
        kwargs.update(self.cfg.init_kwargs)
        ray.init(**kwargs)
        reclaim_sigterm()  # ray.init installs a SIGTERM handler that exits without writing anything

    def close(self) -> None:
        """Shut down the embedded Ray if this executor started it."""
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False

    def default_shards(self, prepared: PreparedRun) -> int:
        self._init()
        return max(1, len(load_nodes(self.cfg)))

    def system_extra(self) -> dict[str, Any]:
        """The cluster part of ``system.json``: every node's resources, labels and hardware.

        CPU/GPU counts, memory and labels come from Ray's node table; the accelerator model comes
        from Ray's ``accelerator_type:<name>`` resource. GPU nodes are also probed once with a
        zero-CPU task running ``raybench.report.system.describe_host`` there (nvidia-smi's model,
        memory and driver; the node's CPU model), bounded by a 20 s timeout and skipped on error.
        MLPerf's per-node fields (``accelerators_per_node`` ...) then describe the SUT nodes (those
        with GPUs, else the driver's host), and ``number_of_nodes`` counts every alive node.
        """
        nodes = []
        raw = self._nodes or (_alive_nodes() if ray.is_initialized() else [])
        for n in raw:
            res = n.get("Resources", {})
            accel = [k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")]
            nodes.append(
                {
                    "node_id": n["NodeID"],
                    "address": n["NodeManagerAddress"],
                    "hostname": n.get("NodeManagerHostname"),
                    "cpus": res.get("CPU", 0),
                    "gpus": res.get("GPU", 0),
                    "accelerator_type": accel[0] if accel else None,
                    "memory_gb": round(res.get("memory", 0) / 2**30, 2),
                    "labels": n.get("Labels", {}),
                    "resources": {k: v for k, v in res.items() if not k.startswith("node:")},
                }
            )
        out: dict[str, Any] = {"ray_version": ray.__version__, "nodes": nodes, "number_of_nodes": len(nodes)}
        # Per replica: where it ran and what its SUT reported (e.g. memory per embedding shard).
        out["sut_replicas"] = [{k: info.get(k) for k in ("replica", "node", "name", "sut_info")}
                               for info in self.replica_infos]
        gpu_nodes = [nd for nd in nodes if nd["gpus"]]
        if not gpu_nodes or not ray.is_initialized():
            return out
        from raybench.report.system import describe_host

        probe = ray.remote(num_cpus=0)(describe_host)
        refs = {nd["node_id"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nd["node_id"], soft=False)).remote()
                for nd in gpu_nodes}
        for nd in gpu_nodes:
            try:
                nd["host"] = ray.get(refs[nd["node_id"]], timeout=20)
            except Exception as exc:  # a probe is a nicety; never fail the run's bookkeeping for it
                nd["host"] = {"error": f"{type(exc).__name__}"}
        first = gpu_nodes[0]
        host = first.get("host") or {}
        out["accelerators_per_node"] = int(max(nd["gpus"] for nd in gpu_nodes))
        out["accelerator_model_name"] = host.get("accelerator_model_name") or first["accelerator_type"] or "N/A"
        for key in ("accelerator_memory_capacity", "host_processor_model_name", "host_processors_per_node",
                    "host_processor_core_count", "host_memory_capacity"):
            if key in host:
                out[key] = host[key]
        return out

    # ------------------------------------------------------------------ placement
    def _shard_options(self, k: int, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.cfg
        opts: dict[str, Any] = {"num_cpus": cfg.shard_num_cpus, "max_concurrency": 64}
        if cfg.shard_resources:
            opts["resources"] = dict(cfg.shard_resources)
        if cfg.placement in ("spread", "node") and nodes:
            node = nodes[k % len(nodes)]
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        elif cfg.placement == "pack":
            opts["scheduling_strategy"] = "DEFAULT"
        return opts

    def _direct_host(self) -> str | None:
        """Where the replicas listen: ``None`` (Ray actor calls), ``"127.0.0.1"`` or ``"node"``.

        The direct channel is the default (``auto``) on every cluster shape, since it is
        authenticated. It binds loopback when every alive node has the same address (one machine,
        so nothing off the host can even connect), and each replica's node IP only when the
        cluster spans several machines. ``ray.transport=ray`` forces actor calls.
        """
        if self.cfg.transport == "ray":
            return None
        one_node = len({n["NodeManagerAddress"] for n in _alive_nodes()}) == 1
        return "127.0.0.1" if one_node else "node"

    def _start_replicas(
        self, prepared: PreparedRun, direct_host: str | None, secret: bytes | None
    ) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
        cfg = self.cfg
        handles, pgs = [], []
        for i in range(max(1, cfg.replicas)):
            opts: dict[str, Any] = {
                "num_cpus": cfg.replica_num_cpus,
                "num_gpus": cfg.replica_num_gpus,
                "max_concurrency": 1000,
            }
            if cfg.replica_resources:
                opts["resources"] = dict(cfg.replica_resources)
            if cfg.replica_bundles:
                pg = ray.util.placement_group(cfg.replica_bundles, strategy="STRICT_PACK", name=f"raybench-replica-{i}")
                ray.get(pg.ready(), timeout=_READY_TIMEOUT_S)
                pgs.append(pg)
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
            handles.append(SUTReplica.options(**opts).remote(prepared.sut.entry, dict(prepared.sut_params), i))
        try:
            starts = [h.start.remote(prepared.sut_context(i), direct_host, secret)
                      for i, h in enumerate(handles)]
            infos = ray.get(starts, timeout=_READY_TIMEOUT_S)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise RuntimeError(f"sut {prepared.sut.name}: a replica failed to start: {type(cause).__name__}: {str(cause).splitlines()[0]}") from None
        return handles, infos, pgs

    # ------------------------------------------------------------------ run
    def run(self, prepared: PreparedRun, jobs: list[ShardJob], progress: ProgressFn | None = None) -> list[ShardReport]:
        self._init()
        cfg = self.cfg
        nodes = load_nodes(cfg)
        self._nodes = _alive_nodes()
        if not nodes:
            raise ValueError("ray.shard_label/shard_resources: no alive node can host a load-generator shard")
        inline = prepared.sut.inline if cfg.sut_inline is None else cfg.sut_inline
        replicas: list[Any] = []
        infos: list[dict[str, Any]] = []
        pgs: list[Any] = []
        shards: list[Any] = []
        deadline = prepared.deadline_s
        direct_host = None if inline else self._direct_host()
        # A fresh key per run, only in this frame and in the actors' arguments: never on self, in
        # the replica infos, the config or a result file.
        secret = _new_run_secret() if direct_host else None
        kind = "inline" if inline else "direct" if direct_host else "ray"
        bind = {None: None, "127.0.0.1": "127.0.0.1", "node": "node-ip"}[direct_host]
        self._transport = {"kind": kind, "bind": bind, "authenticated": direct_host is not None}
        try:
            if not inline:
                replicas, infos, pgs = self._start_replicas(prepared, direct_host, secret)
            self.replica_infos = infos
            self.live_replicas = replicas
            self.live_shards = shards
            self._records_paths = [job.records_path for job in jobs]
            for job in jobs:
                opts = self._shard_options(job.slice.shard, nodes)
                shards.append(LoadGenShard.options(**opts).remote(job, replicas, infos, secret))
            try:
                ready = ray.get([s.prepare.remote() for s in shards], timeout=_READY_TIMEOUT_S)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                raise RuntimeError(f"a load-generator shard failed to start: {type(cause).__name__}: {str(cause).splitlines()[0]}") from None
            self.placements = ready
            t0_wall = time.time_ns() + int(cfg.start_lead_s * 1e9)
            return self._collect(shards, ready, t0_wall, deadline, progress)
        finally:
            # Read the transport counters while the replicas are alive, then let every SUT release
            # what it holds (servers, engines, GPU memory), then kill.
            if replicas:
                try:
                    self._collect_transport_stats(replicas)
                except Exception as exc:  # bookkeeping only: never skip the cleanup below for it
                    log.warning("could not read the replicas' transport counters: %s", type(exc).__name__)
                stops = [h.stop.remote() for h in replicas]
                try:
                    ray.wait(stops, num_returns=len(stops), timeout=30.0)
                except Exception:
                    pass
            for h in shards + replicas:
                try:
                    ray.kill(h)
                except Exception:  # already dead
                    pass
            for pg in pgs:
                try:
                    ray.util.remove_placement_group(pg)
                except Exception:
                    pass

    def _collect_transport_stats(self, replicas: list[Any]) -> None:
        """Read each replica's direct-channel counters (bounded by a short timeout) and warn on rejects."""
        refs = [h.transport_stats.remote() for h in replicas]
        per: list[dict[str, Any]] = []
        unreported: list[int] = []
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_STATS_TIMEOUT_S)
        except Exception:
            ready = []
        for i, ref in enumerate(refs):
            try:
                if ref not in ready:
                    raise TimeoutError
                per.append(ray.get(ref, timeout=_STATS_TIMEOUT_S))
            except Exception:  # a dead or hung replica: its count is unknown, say so
                unreported.append(i)
        rejected = sum(int(p.get("rejected_connections", 0)) for p in per)
        peers = [f"replica {p['replica']}: {a}" for p in per for a in p.get("rejected_peers", [])][:5]
        self._transport.update(
            rejected_connections=rejected,
            rejected_peers=peers,
            replicas=[{k: p.get(k, 0) for k in ("replica", "node", "accepted_connections",
                                                "rejected_connections")} for p in per],
            unreported_replicas=unreported,
        )
        if rejected:
            log.warning("direct channel: SUT replicas dropped %d unauthenticated connection(s) before "
                        "deserialising anything (%s); something other than this run's shards reached their "
                        "ports", rejected, ", ".join(peers))

    def result_extra(self) -> dict[str, Any]:
        """The transport part of ``result.json``: which channel carried the queries and who was refused.

        Returns ``{"transport": {...}}`` with ``kind`` (``direct``, ``ray`` or ``inline``), ``bind``
        (``127.0.0.1``, ``node-ip`` or None), ``authenticated`` (the direct channel's HMAC
        handshake guards every connection), ``rejected_connections`` (connections the replicas
        dropped before reading a byte of payload: wrong or missing secret, silence) with the first
        few ``rejected_peers``, per-replica counters, and ``unreported_replicas`` (dead or too slow
        to answer at the end). Read after :meth:`run`; the run secret is never part of it.
        """
        t: dict[str, Any] = {"kind": None, "bind": None, "authenticated": False, "rejected_connections": 0,
                             "rejected_peers": [], "replicas": [], "unreported_replicas": []}
        t.update(self._transport)
        return {"transport": t}

    def _collect(
        self,
        shards: list[Any],
        ready: list[dict[str, Any]],
        t0_wall: int,
        deadline: float | None,
        progress: ProgressFn | None,
    ) -> list[ShardReport]:
        n = len(shards)
        reports: list[ShardReport | None] = [None] * n
        self._last_stats: dict[int, Any] = {}
        pending = {shards[k].run.remote(t0_wall): k for k in range(n)}
        start = time.monotonic() + self.cfg.start_lead_s
        hard_end = start + deadline + _REPORT_GRACE_S if deadline else None
        stopping = False
        while pending:
            try:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    k = pending.pop(ref)
                    try:
                        reports[k] = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                        reports[k] = self._lost(k, ready[k]["node"], f"died ({type(exc).__name__})")
                        if not stopping:
                            stopping = True
                            for j in pending.values():
                                shards[j].stop.remote(f"run stopped: shard {k} on node {ready[k]['node']} failed")
                self._poll(shards, pending, progress)
                if hard_end is not None and time.monotonic() > hard_end:
                    for ref, k in list(pending.items()):
                        ray.kill(shards[k])
                        reports[k] = self._lost(k, ready[k]["node"], "did not report by the deadline")
                        pending.pop(ref)
            except KeyboardInterrupt as exc:
                if stopping:
                    raise
                stopping = True
                why = interrupt_reason(exc)
                log.warning("%s: stopping shards and writing what was measured", why)
                for k in pending.values():
                    shards[k].stop.remote(why)
                hard_end = time.monotonic() + 30.0
        out = [r if r is not None else self._lost(k, "", "sent no report") for k, r in enumerate(reports)]
        self._fetch_records(shards, out, self._records_paths)
        return out

    def _lost(self, k: int, node: str, what: str) -> ShardReport:
        """The report of a shard that is gone: its last progress snapshot's statistics are kept."""
        stats = self._last_stats.get(k)
        kept = (f"kept its last progress snapshot ({stats.samples_issued} samples issued)" if stats is not None
                else "no progress snapshot had arrived")
        return ShardReport(shard=k, node=node, stats=stats if stats is not None else RunStats(), status="failed",
                           failure=f"shard {k} on node {node} {what}; {kept}",
                           queries_issued=stats.queries_issued if stats is not None else 0)

    def _poll(self, shards: list[Any], pending: dict[Any, int], progress: ProgressFn | None) -> None:
        """Progress snapshots since the last poll, and each shard's statistics so far."""
        alive = sorted(pending.values())
        refs = [shards[k].progress.remote() for k in alive]
        try:
            answers = ray.get(refs, timeout=2.0)
        except Exception:
            return
        for k, (items, stats) in zip(alive, answers, strict=True):
            if stats is not None:
                self._last_stats[k] = stats
            for snap in items if progress is not None else ():
                progress(k, snap)

    @staticmethod
    def _fetch_records(shards: list[Any], reports: list[ShardReport], wanted: list[str | None]) -> None:
        """``records: shard`` files a shard had to keep on its own host are copied here in chunks
        (never whole in memory), next to the others in the run directory."""
        for k, rep in enumerate(reports):
            dest = wanted[k] if k < len(wanted) else None
            if not rep.records_file or not dest or os.path.exists(dest):
                continue
            try:
                size = ray.get(shards[k].file_size.remote(rep.records_file), timeout=30)
                with open(dest, "wb") as f:
                    for off in range(0, size, _CHUNK):
                        f.write(ray.get(shards[k].read_file.remote(rep.records_file, off, _CHUNK), timeout=60))
                rep.records_file = dest
            except Exception as exc:  # the run's measurements are already safe; say where the file stayed
                log.warning("shard %d: records stay on its host at %s (%s)", k, rep.records_file, type(exc).__name__)


_ = socket  # hostname lookups happen in the actors
