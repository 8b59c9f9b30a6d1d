"""Declarative descriptions of workloads and SUTs, discovered by folder.

A workload package ``workloads/<name>/__init__.py`` defines ``WORKLOAD = WorkloadSpec(...)``;
a SUT package ``reference_suts/<name>/__init__.py`` defines ``SUT_SPEC = SUTSpec(...)``.
Heavy classes are named by ``"module:attr"`` strings and imported only when a run starts,
so ``raybench list`` works with no optional dependency installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AccuracyResult", "SUTSpec", "WorkloadSpec", "load_object"]


def load_object(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute.

    Raises:
        ImportError: with the reference in the message when the module or attribute is missing.
    """
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise ImportError(f"bad reference {ref!r}: expected 'module:attr'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"{module_name} has no attribute {attr!r} (from {ref!r})") from exc


@dataclass(frozen=True)
class WorkloadSpec:
    """A benchmark: its sample library, accuracy scorer, defaults and MLPerf identity.

    Attributes:
        name: registry key (snake_case), e.g. ``"yolo11"``.
        description: one line for ``raybench list``.
        library: ``"module:factory"``; ``factory(params: dict) -> SampleLibrary``.
        default_sut: SUT registry key used when the config names none.
        scenarios: scenarios this workload supports.
        accuracy: ``"module:score"``; ``score(entries, library, params) -> AccuracyResult`` where
            ``entries`` is a list of ``(qsl_idx, data: bytes)`` from the accuracy log.
        mlperf_model: the model key in mlperf.conf (``"yolo"``, ``"dlrm-v3"``, ...), used to look
            up per-model settings; ``None`` uses only wildcard entries.
        params: default workload parameters (dataset path, sizes, ...), overridable by config.
        settings: per-scenario TestSettings overrides applied before user overrides, e.g. the
            short durations that make the embedded demo finish quickly.
        token_latencies: whether the workload reports TTFT/TPOT (LLMs).
        sut_params: per-SUT default parameters this workload wants (e.g. batch sizes).
        query_timeout_s: default per-query timeout (e.g. minutes for a video); ``None`` = 600 s.
    """

    name: str
    description: str
    library: str
    default_sut: str
    scenarios: tuple[str, ...] = ("SingleStream", "MultiStream", "Server", "Offline", "Concurrency")
    accuracy: str | None = None
    mlperf_model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    token_latencies: bool = False
    sut_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    query_timeout_s: float | None = None


@dataclass(frozen=True)
class SUTSpec:
    """A reference system under test.

    Attributes:
        name: registry key, e.g. ``"ultralytics_yolo"``.
        description: one line for ``raybench list``.
        entry: ``"module:Class"``; ``Class(params: dict)`` implements the SUT protocol.
        extra: the pip extra that installs its dependencies (``None`` for core-only SUTs).
        params: default parameters.
        inline: on Ray, run the SUT inside each load-generator shard instead of as separate
            replica actors (clients of a remote endpoint, e.g. an HTTP connection pool per shard).
    """

    name: str
    description: str
    entry: str
    extra: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    inline: bool = False


@dataclass(frozen=True)
class AccuracyResult:
    """The outcome of scoring an accuracy log.

    Attributes:
        metrics: metric name -> value (e.g. ``{"mAP": 53.1}``).
        accuracy_txt: the exact text written to ``accuracy.txt`` (in the form the MLPerf
            submission checker's regex reads).
        passed: whether every target was met (``None`` when the workload has no target).
        targets: metric name -> minimum value required.
    """

    metrics: Mapping[str, float]
    accuracy_txt: str
    passed: bool | None = None
    targets: Mapping[str, float] = field(default_factory=dict)
