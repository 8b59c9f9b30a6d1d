"""Run-scoped shared actors for SUTs: host a plain class as an actor, get-or-create it by name.

A SUT that needs state shared by all its replicas (a global scheduler, a sharded embedding
table) imports this module lazily and never imports ray itself, so it still runs in-process
without Ray. Ray is imported inside the functions: importing this module is cheap, and
:func:`in_ray` answers without importing Ray when no Ray is loaded.

Naming and lifetime. :func:`named_actor` creates a *non-detached* named actor owned by the
caller, so it is fate-shared with its owner: when the executor kills the SUT replicas at the end
of a run, their shared actors go too, and nothing leaks between runs. Creation uses Ray's atomic
``get_if_exists``, so replicas racing for the same name all get the one actor. Names must be
unique per run but identical across the replicas of one run: :func:`run_key` builds
``<job id>-<hash of the given parts>`` (replicas share the driver's job id and receive identical
params; ``ray job submit`` and every ``raybench run`` process are a new job). Two runs with the
same params from one driver process (tests, notebooks) reuse the name one after the other; if
the earlier run's actor is still alive when the next run asks (its owner was killed but the
fate-shared kill has not landed yet), its owner no longer answers: the stale actor is killed and
created afresh. An explicit ``run_id`` replaces the job id when a caller has a better one.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time
from typing import Any

__all__ = ["get", "host", "in_ray", "kill", "named_actor", "named_actors", "node_label", "run_key"]

_OWNER_METHOD = "raybench_owner"
_HOSTED: dict[type, type] = {}


def in_ray() -> bool:
    """True when called inside a Ray actor (e.g. a SUT replica), False in a driver or without Ray."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        return ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001 - a half-initialised worker is "not in an actor"
        return False


def node_label() -> str:
    """``hostname/<ray node id prefix>`` of the calling process (``hostname/-`` outside Ray)."""
    node = "-"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        node = ray.get_runtime_context().get_node_id()[:8]
    return f"{socket.gethostname()}/{node}"


def run_key(*parts: Any, run_id: str | None = None) -> str:
    """A name suffix identical across the replicas of one run: ``<run_id or job id>-<hash>``.

    The hash is SHA-1 over the JSON of ``parts`` (sorted keys, ``str`` for the rest), 10 hex
    digits, so runs with different params in one job do not share actors.
    """
    import ray

    base = str(run_id) if run_id else ray.get_runtime_context().get_job_id()
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return f"{base}-{hashlib.sha1(blob).hexdigest()[:10]}"


def host(cls: type, options: dict[str, Any] | None = None) -> Any:
    """A Ray actor class for the plain Python class ``cls`` (its methods become actor methods;
    ``async def`` methods make it an async actor), with ``.options(**options)`` applied.

    The hosted class also records who created it (:func:`named_actor` uses that to detect a
    stale actor left by a previous run).
    """
    import ray

    if not isinstance(cls, type):
        raise TypeError(f"raybench.ray.shared.host: expected a class, got {type(cls).__name__} "
                        f"(wrap a factory function in a class)")
    sub = _HOSTED.get(cls)
    if sub is None:
        def __init__(self: Any, *args: Any, _raybench_owner: Any = None, **kwargs: Any) -> None:
            cls.__init__(self, *args, **kwargs)
            self._raybench_owner = _raybench_owner

        def raybench_owner(self: Any) -> Any:
            return self._raybench_owner

        sub = type(f"{cls.__name__}Actor", (cls,), {
            "__init__": __init__, _OWNER_METHOD: raybench_owner, "__module__": __name__,
            "__qualname__": f"{cls.__qualname__}Actor", "__doc__": cls.__doc__})
        _HOSTED[cls] = sub
    remote = ray.remote(sub)
    return remote.options(**options) if options else remote


def named_actor(name: str, cls: type, *args: Any, namespace: str | None = None,
                options: dict[str, Any] | None = None, timeout_s: float = 60.0, **kwargs: Any) -> Any:
    """Get the actor ``name`` or create it as ``cls(*args, **kwargs)``; race-safe.

    Args:
        name: run-unique actor name (see :func:`run_key`).
        cls: plain Python class to host (see :func:`host`).
        namespace: Ray namespace (``None`` = the job's).
        options: actor options (``num_cpus``, ``resources``, ``memory``, ``scheduling_strategy``,
            ``max_concurrency`` ...). ``name``/``lifetime`` are set here.
        timeout_s: how long to wait for the actor's constructor and for a stale actor to go.

    Returns:
        The actor handle, constructed. The constructor arguments are only used by the caller
        that creates it.

    Raises:
        RuntimeError: Ray is not initialised (the caller asked for shared actors without Ray), or
            a stale actor of that name could not be replaced within ``timeout_s``.
    """
    return named_actors([(name, args, kwargs)], cls, namespace=namespace, options=options,
                        timeout_s=timeout_s)[0]


def named_actors(items: list[tuple[str, tuple[Any, ...], dict[str, Any]]], cls: type, *,
                 namespace: str | None = None, options: dict[str, Any] | None = None,
                 timeout_s: float = 60.0) -> list[Any]:
    """:func:`named_actor` for several ``(name, args, kwargs)`` at once: all are requested before
    any is awaited, so their constructors (e.g. loading table blocks) run in parallel."""
    import ray

    if not ray.is_initialized():
        raise RuntimeError(f"shared actor(s) {[it[0] for it in items]} need a running Ray (use the "
                           f"ray executor or ray.init() first)")
    ctx = ray.get_runtime_context()
    me = ctx.get_actor_id()
    owner = (me, ctx.current_actor) if me is not None else (None, None)
    base = {**(options or {}), "get_if_exists": True}
    base.pop("lifetime", None)
    if namespace is not None:
        base["namespace"] = namespace
    deadline = time.monotonic() + timeout_s
    out: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    while todo:
        handles = {i: host(cls, {**base, "name": items[i][0]}).remote(
            *items[i][1], _raybench_owner=owner, **items[i][2]) for i in todo}
        checks = {i: getattr(h, _OWNER_METHOD).remote() for i, h in handles.items()}
        stale = []
        for i, ref in checks.items():
            try:
                owner_id, owner_handle = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
                ok = _alive(ray, owner_id, owner_handle, me)
            except ray.exceptions.RayActorError:
                ok = False                                      # died while we asked: retry
            if ok:
                out[i] = handles[i]
            else:
                stale.append(i)
                kill(handles[i])
        if stale and time.monotonic() > deadline:
            raise RuntimeError(f"shared actor(s) {[items[i][0] for i in stale]}: a stale actor of "
                               f"a previous run did not go away within {timeout_s:.0f} s")
        if stale:
            time.sleep(0.05)
        todo = stale
    return out


def _alive(ray: Any, owner_id: str | None, owner_handle: Any, me: str | None) -> bool:
    """Whether the creator of a named actor still runs (driver-owned actors live with the job)."""
    if owner_id is None or owner_id == me or owner_handle is None:
        return True
    try:
        ray.get(owner_handle.__ray_ready__.remote(), timeout=10)
    except ray.exceptions.GetTimeoutError:
        return True                       # busy, not dead: never kill a live run's actor
    except ray.exceptions.RayActorError:
        return False
    return True


def get(refs: Any, timeout: float | None = None) -> Any:
    """``ray.get`` (so that callers outside ``raybench.ray`` need not import ray)."""
    import ray

    return ray.get(refs, timeout=timeout)


def kill(handle: Any) -> None:
    """Kill an actor; an actor that is already dead is fine."""
    import ray

    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass

