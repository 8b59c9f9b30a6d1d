"""The Ray layer: the only package of raybench that imports ray.

``RayExecutor`` runs the core loadgen in ``LoadGenShard`` actors (one per load node by default)
and any reference SUT as ``SUTReplica`` actors, behind the same Executor seam as the in-process
executor.
"""

from __future__ import annotations

__all__ = ["RayExecutor"]


def __getattr__(name: str):  # lazy: importing raybench.ray does not start or import Ray
    if name == "RayExecutor":
        from raybench.ray.executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)
