"""Discovery of workloads and SUTs by folder.

``workloads/<name>/__init__.py`` defines ``WORKLOAD = WorkloadSpec(...)`` and
``reference_suts/<name>/__init__.py`` defines ``SUT_SPEC = SUTSpec(...)``. Importing those
``__init__`` modules is cheap by convention (heavy imports live in the modules the specs name),
so listing works with no optional dependency installed.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from raybench.core.spec import SUTSpec, WorkloadSpec, load_object

__all__ = ["RegistryError", "get_sut", "get_workload", "list_suts", "list_workloads", "make_library", "make_sut"]


class RegistryError(LookupError):
    """An unknown workload or SUT name."""


def _discover(package: str, attr: str) -> dict[str, Any]:
    pkg = importlib.import_module(package)
    found: dict[str, Any] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{package}.{info.name}")
        except ImportError:
            continue
        spec = getattr(mod, attr, None)
        if spec is None:
            continue
        if spec.name in found:
            raise RegistryError(f"duplicate {attr} name {spec.name!r} in {package}.{info.name}")
        found[spec.name] = spec
    return found


@cache
def list_workloads() -> dict[str, WorkloadSpec]:
    return _discover("workloads", "WORKLOAD")


@cache
def list_suts() -> dict[str, SUTSpec]:
    return _discover("reference_suts", "SUT_SPEC")


def get_workload(name: str) -> WorkloadSpec:
    specs = list_workloads()
    if name not in specs:
        raise RegistryError(f"workload.name: unknown workload {name!r} (known: {', '.join(sorted(specs))})")
    return specs[name]


def get_sut(name: str) -> SUTSpec:
    specs = list_suts()
    if name not in specs:
        raise RegistryError(f"sut.name: unknown SUT {name!r} (known: {', '.join(sorted(specs))})")
    return specs[name]


def workload_params(spec: WorkloadSpec, overrides: dict[str, Any] | None) -> dict[str, Any]:
    return {**dict(spec.params), **(overrides or {})}


def sut_params(sut: SUTSpec, workload: WorkloadSpec | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    base = dict(sut.params)
    if workload is not None:
        base.update(workload.sut_params.get(sut.name, {}))
    base.update(overrides or {})
    return base


def make_library(spec: WorkloadSpec, params: dict[str, Any]) -> Any:
    """Build the workload's sample library (imports the workload's dataset module)."""
    return load_object(spec.library)(params)


def make_sut(sut: SUTSpec, params: dict[str, Any]) -> Any:
    """Construct the SUT class named by ``sut.entry`` (imports the SUT's module)."""
    return load_object(sut.entry)(params)
