"""Discovery of workloads and SUTs by folder, and validation of their parameters.

``workloads/<name>/__init__.py`` defines ``WORKLOAD = WorkloadSpec(...)`` and may define
``SUTS = (SUTSpec(...), ...)``, SUTs that belong to the workload (its oracle);
``reference_suts/<name>/__init__.py`` defines ``SUT_SPEC = SUTSpec(...)``. Those modules are cheap
to import by convention, so listing needs no optional dependency. A package that fails to import
is reported (``broken_workloads``/``broken_suts``, ``raybench list``, ``get_*`` on its name).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache
from types import ModuleType
from typing import Any

from raybench.core.spec import ParamsError, SUTSpec, WorkloadSpec, load_object, validate_params

__all__ = ["ParamsError", "RegistryError", "broken_suts", "broken_workloads", "get_sut", "get_workload",
           "list_suts", "list_workloads", "make_library", "make_sut", "sut_params", "workload_params"]  # fmt: skip


class RegistryError(LookupError):
    """An unknown or unavailable workload or SUT name."""


@cache
def _packages(package: str) -> tuple[tuple[ModuleType, ...], dict[str, str]]:
    """The importable sub-packages of ``package`` and, for the others, why (one line)."""
    root = importlib.import_module(package)
    found: list[ModuleType] = []
    broken: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        try:
            found.append(importlib.import_module(f"{package}.{info.name}"))
        except Exception as exc:  # noqa: BLE001 - a broken package is reported, not fatal to the others
            broken[info.name] = (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0]
    return tuple(found), broken


def _index(specs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}  # name -> spec, refusing duplicates
    for where, spec in specs:
        if spec.name in found:
            raise RegistryError(f"duplicate name {spec.name!r} in {where}")
        found[spec.name] = spec
    return found


@cache
def list_workloads() -> dict[str, WorkloadSpec]:
    return _index((m.__name__, m.WORKLOAD) for m in _packages("workloads")[0] if hasattr(m, "WORKLOAD"))


@cache
def list_suts() -> dict[str, SUTSpec]:
    """``reference_suts/*`` SUTs, then the SUTs that workload packages declare in ``SUTS``."""
    pairs = [(m.__name__, m.SUT_SPEC) for m in _packages("reference_suts")[0] if hasattr(m, "SUT_SPEC")]
    pairs += [(m.__name__, s) for m in _packages("workloads")[0] for s in getattr(m, "SUTS", ())]
    return _index(pairs)


def broken_workloads() -> dict[str, str]:
    """Workload packages that failed to import: folder name -> ``"ImportError: ..."``."""
    return dict(_packages("workloads")[1])


def broken_suts() -> dict[str, str]:
    return dict(_packages("reference_suts")[1])


def _get(kind: str, label: str, name: str, specs: dict[str, Any], broken: dict[str, str]) -> Any:
    if name in specs:
        return specs[name]
    if name in broken:
        raise RegistryError(f"{kind}.name: {label} {name!r} is unavailable: {broken[name]}")
    more = f"; broken packages: {', '.join(sorted(broken))}" if broken else ""
    raise RegistryError(f"{kind}.name: unknown {label} {name!r} (known: {', '.join(sorted(specs))}{more})")


def get_workload(name: str) -> WorkloadSpec:
    return _get("workload", "workload", name, list_workloads(), broken_workloads())


def get_sut(name: str) -> SUTSpec:
    broken = {**{f"workloads.{k}": v for k, v in broken_workloads().items()}, **broken_suts()}
    return _get("sut", "SUT", name, list_suts(), broken)


def workload_params(spec: WorkloadSpec, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Model defaults < ``overrides``, validated (``ParamsError``: ``workload.params.x: unknown field``)."""
    return validate_params(spec.params_model, overrides, "workload.params")


def sut_params(
    sut: SUTSpec, workload: WorkloadSpec | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Model defaults < the workload's ``sut_params`` < ``overrides``, validated (``ParamsError``)."""
    base = dict(workload.sut_params.get(sut.name, {})) if workload is not None else {}
    base.update(overrides or {})
    return validate_params(sut.params_model, base, "sut.params")


def make_library(spec: WorkloadSpec, params: dict[str, Any]) -> Any:
    """Build the workload's sample library (imports the workload's dataset module)."""
    return load_object(spec.library)(params)


def make_sut(sut: SUTSpec, params: dict[str, Any]) -> Any:
    """Construct the SUT class named by ``sut.entry`` (imports the SUT's module).

    Raises:
        ValueError: a bad parameter (one line naming it), or the SUT's constructor failed (one line
            naming the SUT and what it raised).
    """
    cls = load_object(sut.entry)
    try:
        return cls(params)
    except ValueError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"sut {sut.name}: its constructor raised {type(exc).__name__}: {first}") from exc
