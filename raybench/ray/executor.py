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

Start-up explains itself (:mod:`raybench.ray.placement`): requests no node could ever hold fail
before any actor exists; anything not placed is reported every few seconds (``on_status``) and
given up after ``ray.placement_timeout_s``; a wrong ``ray.address`` fails within seconds and
Ctrl-C/SIGTERM at any point stops what was started (:mod:`raybench.ray.startup`). How the shards
agreed on T0 and how far their clocks disagree goes into ``result.json`` (:mod:`raybench.ray.clocks`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from raybench.config import RayConfig
from raybench.core.aggregate import RunStats
from raybench.core.records import ShardReport
from raybench.ray.actors import LoadGenShard, SUTReplica
from raybench.ray.clocks import TEST_OFFSET_ENV, clock_summary, measure_skew, parse_wall_offsets
from raybench.ray.placement import (
    ClusterError,
    PlacementError,
    PlacementWatcher,
    Request,
    check_bundle_holds_actor,
    check_feasible,
    request_fields,
    watch_item,
)
from raybench.ray.startup import (
    RunInterrupted,
    deferred_signals,
    descendants,
    kill_descendants,
    probe_address,
    ray_keeps_sigterm,
    signal_name,
)
from raybench.run import PreparedRun, ProgressFn, ShardJob
from raybench.signals import interrupt_reason, signum_of

__all__ = ["RayExecutor", "load_nodes"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = float(os.environ.get("RAYBENCH_READY_TIMEOUT_S", "3600"))
_REPORT_GRACE_S = 60.0
_CHUNK = 8 * 2**20
_STATS_EVERY = 3
_STATS_TIMEOUT_S = 5.0  # end-of-run transport counters: a nicety, never worth holding a run up
_GCS_CONNECT_ATTEMPTS = "5"  # RAY_gcs_server_port_wait_time_s while connecting to an address (Ray: 20)
_SKEW_WARN_NS = 5_000_000  # a status line when the shards' clocks disagree by more than this


def _new_run_secret() -> bytes:
    """32 random bytes shared by this run's shards and replicas (the direct channel's key)."""
    return secrets.token_bytes(32)


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def load_nodes(cfg: RayConfig, nodes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Nodes eligible for load-generator shards.

    A node qualifies if it has every resource in ``shard_resources`` and, with ``shard_label``
    (``key=value``), that node label. Without either, GPU nodes are skipped whenever a CPU-only
    node exists (load generators never compete with the SUT for a GPU host unless asked).
    """
    nodes = _alive_nodes() if nodes is None else list(nodes)
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


def _explain_no_load_node(cfg: RayConfig, alive: list[dict[str, Any]]) -> ClusterError:
    """Why :func:`load_nodes` found nothing, naming the field that filtered every node out."""
    if cfg.shard_resources:
        req = Request(who="a load-generator shard", kind="shard", demand=dict(cfg.shard_resources),
                      fields=request_fields("shard"))
        try:
            check_feasible([req], alive)
        except PlacementError as exc:
            return exc
    if cfg.shard_label:
        seen = sorted({f"{k}={v}" for n in alive for k, v in (n.get("Labels") or {}).items()
                       if not k.startswith("ray.io/")})
        key = cfg.shard_label.partition("=")[0]
        return PlacementError(f"ray.shard_label: no alive node has label {cfg.shard_label} (nodes: {len(alive)}; "
                              f"labels seen: {', '.join(seen[:8]) or 'none'}; set with `ray start --labels "
                              f"'{{\"{key}\": ...}}'`)")
    return PlacementError(f"ray.shard_resources: no alive node can host a load-generator shard (nodes: {len(alive)})")


def _stderr_status(msg: str) -> None:
    print(f"raybench: {msg}", file=sys.stderr, flush=True)


class RayExecutor:
    """Runs shard slices as ``LoadGenShard`` actors and the SUT as ``SUTReplica`` actors.

    Args:
        cfg: placement and resources (``RunConfig.ray``). With ``address=None`` (and no
            RAY_ADDRESS) an embedded local Ray is started and shut down at the end.
        on_status: where start-up status lines go (what waits for which resources, interrupts);
            default: the module logger at WARNING (visible without any logging setup).
    """

    def __init__(self, cfg: RayConfig | None = None, on_status: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg or RayConfig()
        self.on_status = on_status
        self._owns_ray = False
        self._nodes: list[dict[str, Any]] = []
        self.live_shards: list[Any] = []
        self.live_replicas: list[Any] = []
        self.placements: list[dict[str, Any]] = []
        self.replica_infos: list[dict[str, Any]] = []
        self._transport: dict[str, Any] = {}
        self._clock: dict[str, Any] | None = None
        # Everything this run created, as it is created (cleanup and interrupt messages use it).
        self._actors: list[Any] = []
        self._pgs: list[Any] = []
        self._stage = "preparing the run"
        self._watcher: PlacementWatcher | None = None
        self._noun = ""
        # Per run: each shard's latest statistics (kept if it dies), the progress polls so far,
        # and where records: shard files belong.
        self._last_stats: dict[int, Any] = {}
        self._polls = 0
        self._records_paths: list[str | None] = []

    def _status(self, msg: str) -> None:
        if self.on_status is not None:
            self.on_status(msg)
        else:
            log.warning("%s", msg)

    # ------------------------------------------------------------------ cluster
    def _init(self) -> None:
        """Connect to (or start) Ray: fast failure on a wrong address, no half-started Ray on Ctrl-C."""
        if ray.is_initialized():
            return
        field = "ray.address"
        address = self.cfg.address
        if not address and os.environ.get("RAY_ADDRESS"):
            address, field = os.environ["RAY_ADDRESS"], "ray.address (from RAY_ADDRESS)"
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True, "configure_logging": False}
        if self.cfg.runtime_env:
            kwargs["runtime_env"] = self.cfg.runtime_env
        owns = not address or address == "local"
        if owns:
            kwargs.update(address="local", include_dashboard=False, object_store_memory=512 * 2**20)  # never attach to /tmp/ray's latest cluster
            self._stage = "starting the embedded Ray"
        else:
            kwargs["address"] = address
            self._stage = f"connecting to the Ray cluster at {address}"
            probe_address(address, field)
        kwargs.update(self.cfg.init_kwargs)
        before = {p.pid for p in descendants()} if owns else set()
        self._status("starting an embedded local Ray (no ray.address given)" if owns else f"{self._stage} ({field})")

        def note(signum: int) -> None:
            self._status(f"{signal_name(signum)} received while {self._stage}: stopping as soon as Ray is up "
                         f"(again to force)")

        wait_var = "RAY_gcs_server_port_wait_time_s"
        capped = not owns and wait_var not in os.environ
        if capped:
            os.environ[wait_var] = _GCS_CONNECT_ATTEMPTS
        try:
            with ray_keeps_sigterm(), deferred_signals(note):
                try:
                    ray.init(**kwargs)
                    self._owns_ray = owns
                except BaseException as exc:
                    killed = 0
                    if owns:  # Ray's processes started so far are no one's now: stop them
                        killed = kill_descendants([p for p in descendants() if p.pid not in before and _is_ray(p)])
                    if isinstance(exc, KeyboardInterrupt):
                        raise RunInterrupted(f"{_verb(exc)} while {self._stage}: stopped {killed} Ray process"
                                             f"{'es' if killed != 1 else ''}", signum_of(exc)) from None
                    if owns or not isinstance(exc, ConnectionError | RuntimeError | ValueError):
                        raise
                    raise ClusterError(f"{field}: could not connect to the Ray cluster at {address}: "
                                       f"{type(exc).__name__}: {_first_line(exc)}") from None
        except KeyboardInterrupt as exc:  # delivered right after ray.init, as deferred
            if isinstance(exc, RunInterrupted):
                raise
            done = "shut down the embedded Ray" if self.close() else "disconnected from the cluster"
            if not owns and ray.is_initialized():
                ray.shutdown()
            raise RunInterrupted(f"{_verb(exc)} while {self._stage}: {done}", signum_of(exc)) from None
        finally:
            if capped:
                os.environ.pop(wait_var, None)

    def close(self) -> bool:
        """Shut down the embedded Ray if this executor started it; True if it did.

        Signals are held while Ray shuts down (an interrupt there is what left Ray agents running),
        and Ray processes of this driver that outlive the shutdown are killed.
        """
        if not (self._owns_ray and ray.is_initialized()):
            return False
        procs = [p for p in descendants() if _is_ray(p)]
        with deferred_signals(redeliver=False):
            ray.shutdown()
            self._owns_ray = False
            time.sleep(0.2)
            kill_descendants(procs)
        return True

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
    def _shard_cpus(self, n: int, inline: bool) -> float:
        """CPUs per shard: ``ray.shard_num_cpus``, or a fraction when the embedded Ray is too small.

        Only on the embedded local Ray and only when ``shard_num_cpus`` was not set: N shards of
        1 CPU plus the replicas never fit a 2-core laptop, and load generators there share the
        host anyway, so they get what is left (down to zero-CPU actors) and the run says so.
        """
        cpus = float(self.cfg.shard_num_cpus)
        if not self._owns_ray or "shard_num_cpus" in self.cfg.model_fields_set or n * cpus == 0:
            return cpus
        total = sum(float(nd["Resources"].get("CPU", 0)) for nd in self._nodes)
        per_replica = (_sum(self.cfg.replica_bundles).get("CPU", 0.0) if self.cfg.replica_bundles
                       else float(self.cfg.replica_num_cpus))
        replicas = 0.0 if inline else max(1, self.cfg.replicas) * per_replica
        room = total - replicas
        if n * cpus <= room + 1e-9:
            return cpus
        share = max(0.0, math.floor(max(room, 0.0) / n * 100) / 100)
        who = f"{n} shards get {share:g} CPU each" if n != 1 else f"the shard gets {share:g} CPU"
        self._status(f"the embedded Ray has {total:g} CPUs ({replicas:g} for the SUT replicas): {who} instead of "
                     f"{cpus:g} (set ray.shard_num_cpus to insist)")
        return share

    def _shard_request(self, k: int, nodes: list[dict[str, Any]], cpus: float) -> tuple[Request, dict[str, Any]]:
        cfg = self.cfg
        opts: dict[str, Any] = {"num_cpus": cpus, "max_concurrency": 64}
        if cfg.shard_resources:
            opts["resources"] = dict(cfg.shard_resources)
        node_id = None
        if cfg.placement in ("spread", "node") and nodes:
            node_id = nodes[k % len(nodes)]["NodeID"]
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        elif cfg.placement == "pack":
            opts["scheduling_strategy"] = "DEFAULT"
        req = Request(who=f"shard {k}", kind="shard", demand={"CPU": cpus, **cfg.shard_resources},
                      fields=request_fields("shard"), node_id=node_id,
                      node_why=f" (ray.placement={cfg.placement} pins each shard to one of {len(nodes)} load "
                               f"node{'s' if len(nodes) != 1 else ''})")
        return req, opts

    def _replica_requests(self) -> list[tuple[Request, Request | None, dict[str, Any]]]:
        cfg = self.cfg
        out = []
        for i in range(max(1, cfg.replicas)):
            opts: dict[str, Any] = {"num_cpus": cfg.replica_num_cpus, "num_gpus": cfg.replica_num_gpus,
                                    "max_concurrency": 1000}
            if cfg.replica_resources:
                opts["resources"] = dict(cfg.replica_resources)
            req = Request(who=f"replica {i}", kind="replica", fields=request_fields("replica"),
                          demand={"CPU": cfg.replica_num_cpus, "GPU": cfg.replica_num_gpus, **cfg.replica_resources})
            pg_req = None
            if cfg.replica_bundles:
                pg_req = Request(who=f"replica {i}'s placement group", kind="bundles", demand={},
                                 fields=request_fields("bundles"), bundles=[dict(b) for b in cfg.replica_bundles])
            out.append((req, pg_req, opts))
        return out

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

    def _start_replicas(self, prepared: PreparedRun, plan: list[tuple[Request, Request | None, dict[str, Any]]],
                        direct_host: str | None, secret: bytes | None,
                        watcher: PlacementWatcher, started: set[int]) -> tuple[list[Any], list[dict[str, Any]]]:
        handles, items = [], []
        for i, (req, pg_req, opts) in enumerate(plan):
            pg = None
            if pg_req is not None:
                pg = ray.util.placement_group(pg_req.bundles, strategy="STRICT_PACK", name=f"raybench-replica-{i}")
                self._pgs.append(pg)
                opts = {**opts, "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)}
            h = SUTReplica.options(**opts).remote(prepared.sut.entry, dict(prepared.sut_params), i)
            self._actors.append(h)
            handles.append(h)
            items.append(watch_item(req, h.start.remote(prepared.sut_context(i), direct_host, secret), h, pg, pg_req))
        self.live_replicas = handles
        try:
            infos = watcher.wait(items, on_ready=lambda i, _: started.add(i))
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            raise RuntimeError(f"sut {prepared.sut.name}: a replica failed to start: {_cause(exc)}") from None
        return handles, infos

    # ------------------------------------------------------------------ run
    def run(self, prepared: PreparedRun, jobs: list[ShardJob], progress: ProgressFn | None = None) -> list[ShardReport]:
        self._init()
        cfg = self.cfg
        self._stage = "checking the cluster"
        self._nodes = _alive_nodes()
        nodes = load_nodes(cfg, self._nodes)
        if not nodes:
            raise _explain_no_load_node(cfg, self._nodes)
        inline = prepared.sut.inline if cfg.sut_inline is None else cfg.sut_inline
        # Everything this run will ask for, checked against what the nodes have before anything starts.
        replica_plan = [] if inline else self._replica_requests()
        for req, pg_req, _ in replica_plan:
            if pg_req is not None:
                check_bundle_holds_actor(req, pg_req.bundles)
        check_feasible([pg_req or req for req, pg_req, _ in replica_plan], self._nodes)
        cpus = self._shard_cpus(len(jobs), inline)
        shard_plan = [self._shard_request(job.slice.shard, nodes, cpus) for job in jobs]
        check_feasible([req for req, _ in shard_plan], self._nodes)
        reqs = [pg_req or req for req, pg_req, _ in replica_plan] + [req for req, _ in shard_plan]
        needs: dict[str, float] = {}
        for r in reqs:
            for k, v in (r.demand if r.kind != "bundles" else _sum(r.bundles)).items():
                needs[k] = needs.get(k, 0.0) + v
        watcher = PlacementWatcher(self._status, cfg.placement_timeout_s, _READY_TIMEOUT_S, run_needs=needs)
        self._watcher = watcher

        replicas: list[Any] = []
        infos: list[dict[str, Any]] = []
        shards: list[Any] = []
        started: set[int] = set()
        self.live_replicas, self.live_shards, self._clock = [], [], None
        deadline = prepared.deadline_s
        direct_host = None if inline else self._direct_host()
        # A fresh key per run, only in this frame and in the actors' arguments: never on self, in
        # the replica infos, the config or a result file.
        secret = _new_run_secret() if direct_host else None
        kind = "inline" if inline else "direct" if direct_host else "ray"
        bind = {None: None, "127.0.0.1": "127.0.0.1", "node": "node-ip"}[direct_host]
        self._transport = {"kind": kind, "bind": bind, "authenticated": direct_host is not None}
        offsets = parse_wall_offsets(os.environ.get(TEST_OFFSET_ENV))
        interrupted: BaseException | None = None
        try:
            if replica_plan:
                self._stage, self._noun = "", "SUT replica"
                replicas, infos = self._start_replicas(prepared, replica_plan, direct_host, secret, watcher, started)
            self.replica_infos = infos
            self.live_shards = shards
            self._stage, self._noun = "", "shard"
            self._records_paths = [job.records_path for job in jobs]
            items = []
            for job, (req, opts) in zip(jobs, shard_plan, strict=True):
                k = job.slice.shard
                h = LoadGenShard.options(**opts).remote(job, replicas, infos, secret, offsets.get(k, 0))
                self._actors.append(h)
                shards.append(h)
                items.append(watch_item(req, h.prepare.remote(), h))
            try:
                ready = watcher.wait(items)
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                raise RuntimeError(f"a load-generator shard failed to start: {_cause(exc)}") from None
            self.placements = ready
            self._stage, self._noun = "measuring the shards' clock skew", ""
            skews = measure_skew(shards)
            t0_wall = time.time_ns() + int(cfg.start_lead_s * 1e9)
            self._stage = "running"
            reports, clock_infos = self._collect(shards, ready, t0_wall, deadline, progress)
            self._clock = clock_summary(t0_wall, skews, clock_infos, [r.get("node", "") for r in ready])
            self._warn_skew(self._clock)
            return reports
        except KeyboardInterrupt as exc:
            interrupted = exc
            raise
        finally:
            stage = self._describe_stage() if interrupted is not None else ""
            # live_replicas, not replicas: replicas that started before a later one failed get stop() too.
            actors, pgs = self._cleanup(self.live_replicas, started, fast=interrupted is not None)
            if interrupted is not None and not isinstance(interrupted, RunInterrupted):
                done = [f"stopped {actors} actor{'s' if actors != 1 else ''}",
                        f"removed {pgs} placement group{'s' if pgs != 1 else ''}"]
                if self.close():
                    done.append("shut down the embedded Ray")
                raise RunInterrupted(f"{_verb(interrupted)} while {stage}: {', '.join(done)}",
                                     signum_of(interrupted)) from None

    def _describe_stage(self) -> str:
        if self._stage:
            return self._stage
        if self._watcher is not None and self._noun:
            try:
                return self._watcher.phase(self._noun)
            except Exception:  # the GCS tables are advisory
                pass
        return f"starting the {self._noun or 'actor'}s"

    def _cleanup(self, replicas: list[Any], started: set[int], fast: bool) -> tuple[int, int]:
        """Stop the SUTs, kill every actor and remove every placement group this run created.

        Read the transport counters while the replicas are alive, then let every started SUT
        release what it holds (servers, engines, GPU memory), then kill. Signals are held meanwhile
        (a second Ctrl-C must not leave half of it undone). Returns (actors killed, groups removed).
        """
        with deferred_signals(lambda _: self._status("still stopping what was started, please wait"), redeliver=False):
            live = [replicas[i] for i in sorted(started) if i < len(replicas)]
            if live and not fast:
                try:
                    self._collect_transport_stats(live)
                except Exception as exc:  # bookkeeping only: never skip the cleanup below for it
                    log.warning("could not read the replicas' transport counters: %s", type(exc).__name__)
            if live:
                stops = [h.stop.remote() for h in live]
                with contextlib.suppress(Exception):
                    ray.wait(stops, num_returns=len(stops), timeout=5.0 if fast else 30.0)
            actors, pgs = list(self._actors), list(self._pgs)
            self._actors, self._pgs = [], []
            for h in actors:
                with contextlib.suppress(Exception):  # already dead
                    ray.kill(h)
            for pg in pgs:
                with contextlib.suppress(Exception):
                    ray.util.remove_placement_group(pg)
            _wait_dead(actors, timeout_s=5.0)
        return len(actors), len(pgs)

    def _warn_skew(self, clock: dict[str, Any]) -> None:
        if clock["max_skew_ns"] <= _SKEW_WARN_NS:
            return
        rows = [r for r in clock["per_shard"] if r["skew_ns"] is not None]
        if not rows:
            return
        worst = max(rows, key=lambda r: abs(r["skew_ns"]))
        way = "ahead of" if worst["skew_ns"] > 0 else "behind"
        self._status(f"clock: shard {worst['shard']}'s wall clock is {abs(worst['skew_ns']) / 1e6:.1f} ms {way} the "
                     f"driver's (±{worst['skew_bound_ns'] / 1e6:.1f} ms), so it started that much "
                     f"{'early' if worst['skew_ns'] > 0 else 'late'}; latencies are unaffected (check NTP on "
                     f"{worst['node']})")

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

        Also ``{"clock": {...}}`` (:func:`raybench.ray.clocks.clock_summary`): how the shards
        agreed on T0 (``t0_agreement``, ``t0_wall_ns``), each shard's wall-clock skew against the
        driver with its round-trip bound, when it saw T0 on its own wall clock and its
        monotonic/wall offset, and ``max_skew_ns``, the spread of all those clocks.
        """
        t: dict[str, Any] = {"kind": None, "bind": None, "authenticated": False, "rejected_connections": 0,
                             "rejected_peers": [], "replicas": [], "unreported_replicas": []}
        t.update(self._transport)
        out: dict[str, Any] = {"transport": t}
        if self._clock is not None:
            out["clock"] = self._clock
        return out

    def _collect(
        self,
        shards: list[Any],
        ready: list[dict[str, Any]],
        t0_wall: int,
        deadline: float | None,
        progress: ProgressFn | None,
    ) -> tuple[list[ShardReport], list[dict[str, Any] | None]]:
        n = len(shards)
        reports: list[ShardReport | None] = [None] * n
        self._last_stats, self._polls = {}, 0
        pending = {shards[k].run.remote(t0_wall): k for k in range(n)}
        clock_refs = [s.clock_info.remote() for s in shards]  # answered as soon as each shard converted T0
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
                self._status(f"{why}: stopping the shards and writing what was measured (again to abandon)")
                for k in pending.values():
                    shards[k].stop.remote(why)
                hard_end = time.monotonic() + 30.0
        out = [r if r is not None else self._lost(k, "", "sent no report") for k, r in enumerate(reports)]
        self._fetch_records(shards, out, self._records_paths)
        return out, _get_each(clock_refs, _STATS_TIMEOUT_S)

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
        self._polls += 1
        # Statistics every few polls (a shard that dies loses at most that many seconds); snapshots
        # every poll: serialising histograms each second costs the shard's loop for nothing.
        with_stats = self._polls % _STATS_EVERY == 0
        refs = [shards[k].progress.remote(with_stats) for k in alive]
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


def _get_each(refs: list[Any], timeout_s: float) -> list[Any]:
    """``ray.get`` of each ref within one shared timeout; ``None`` for any that failed or is late."""
    try:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    except Exception:
        return [None] * len(refs)
    out = []
    for ref in refs:
        try:
            out.append(ray.get(ref, timeout=0.1) if ref in ready else None)
        except Exception:
            out.append(None)
    return out


def _wait_dead(handles: list[Any], timeout_s: float) -> None:
    """Wait (bounded) until the GCS lists every killed actor as DEAD, so "stopped" is true when said."""
    end = time.monotonic() + timeout_s
    left = [h._actor_id.hex() for h in handles]
    while left and time.monotonic() < end:
        try:
            left = [a for a in left if (ray._private.state.actors(actor_id=a) or {}).get("State", "DEAD") != "DEAD"]
        except Exception:
            return
        if left:
            time.sleep(0.1)


def _verb(exc: BaseException) -> str:
    return interrupt_reason(exc)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {_first_line(cause)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_ray(proc: Any) -> bool:
    """A process Ray started (gcs_server, raylet, ray:: workers and agents, its Python helpers)."""
    try:
        return "ray" in " ".join(proc.cmdline()[:3])
    except Exception:
        return False


def _sum(bundles: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


_ = socket  # hostname lookups happen in the actors
