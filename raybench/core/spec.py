"""Declarative descriptions of workloads and SUTs, discovered by folder, and their parameters.

A workload package ``workloads/<name>/__init__.py`` defines ``WORKLOAD = WorkloadSpec(...)``;
a SUT package ``reference_suts/<name>/__init__.py`` defines ``SUT_SPEC = SUTSpec(...)``.
Heavy classes are named by ``"module:attr"`` strings and imported only when a run starts,
so ``raybench list`` works with no optional dependency installed.

Parameters are typed: every spec names a :class:`Params` model (a pydantic model that forbids
unknown fields, usually in the package's ``params.py``, which imports only pydantic and the
standard library). :func:`validate_params` turns a user's dict into the full, validated dict,
or raises :class:`ParamsError` with one line naming the field as the user typed it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

__all__ = [
    "AccuracyResult",
    "Params",
    "ParamsError",
    "SUTSpec",
    "WorkloadSpec",
    "load_object",
    "param_defaults",
    "parse_params",
    "validate_params",
]


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


class Params(BaseModel):
    """Base of every workload's and SUT's parameter model: unknown fields are errors, values frozen.

    Each field has a default and a docstring (the string literal under it), which becomes its
    description. Values that a type cannot express are checked by validators whose ``ValueError``
    message reads after the field name (``sut.params.model: required (...)``).

    Example:
        >>> from pydantic import Field
        >>> class NullParams(Params):
        ...     max_batch: int = Field(1024, ge=1)
        >>> validate_params(NullParams, {"max_bach": 2}, "sut.params")
        Traceback (most recent call last):
        ParamsError: sut.params.max_bach: unknown field
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, protected_namespaces=()
    )


class ParamsError(ValueError):
    """Invalid parameters; the message is one line, e.g. ``sut.params.latency.dist: Input should be ...``."""


class _NoParams(Params):
    """The model of a spec that declares none: every field is unknown."""


def _model(ref: type[BaseModel] | str | None) -> type[BaseModel]:
    if ref is None:
        return _NoParams
    return load_object(ref) if isinstance(ref, str) else ref


def _error_line(exc: ValidationError, data: Any, where: str) -> str:
    """``<where>.<field path>: <message>`` for the first error of ``exc``.

    pydantic puts the tag of a discriminated union's member in the location
    (``latency.constant.ms``). A location part that is not a key of the input at that depth is
    such a tag, and is left out so that the path is the one the user typed, unless it is the last
    part naming a field that is missing or whose default failed (the error's input is not that
    mapping then).
    """
    err = exc.errors(include_url=False)[0]
    parts: list[str] = []
    node = data
    loc = err["loc"]
    for i, part in enumerate(loc):
        if isinstance(node, Mapping) and part not in node:
            last = i == len(loc) - 1
            if not last or (err["type"] != "missing" and err.get("input") == node):
                continue
        parts.append(str(part))
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        msg = "unknown field"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        parts.append(str(ctx.get("discriminator", "")).strip("'").removesuffix("()"))
        tags = [t.strip() for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
        expected = ", ".join(tags[:-1]) + f" or {tags[-1]}" if len(tags) > 1 else "".join(tags)
        msg = f"Input should be {expected}" if kind == "union_tag_invalid" else "Field required"
    elif kind in ("value_error", "assertion_error"):
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    path = ".".join([where, *parts])
    return f"{path}: {' '.join(msg.split())}"


def parse_params(model: type[BaseModel] | str | None, values: Mapping[str, Any] | None, where: str) -> Any:
    """Validate ``values`` through ``model`` (a class or ``"module:Class"``) and return the instance.

    Args:
        where: the prefix of error messages, e.g. ``"sut.params"``.

    Raises:
        ParamsError: one line naming the first bad field, e.g. ``workload.params.cont: unknown field``.
            pydantic's message is used without the input value (it may be a secret, such as a key
            put in params by mistake) and without the exception chain; a validator's own message
            quotes what it chooses.
    """
    if values is not None and not isinstance(values, Mapping):
        raise ParamsError(f"{where}: expected a mapping of parameters, got {type(values).__name__}")
    data = dict(values or {})
    try:
        return _model(model).model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_error_line(exc, data, where)) from None


def validate_params(
    model: type[BaseModel] | str | None, values: Mapping[str, Any] | None, where: str
) -> dict[str, Any]:
    """:func:`parse_params`, dumped to a plain dict with every default filled in."""
    return parse_params(model, values, where).model_dump()


def param_defaults(model: type[BaseModel] | str | None) -> dict[str, Any]:
    """The model's defaults as a plain dict, without running validators (a required value stays ``None``)."""
    cls = _model(model)
    if issubclass(cls, RootModel):
        return cls.model_fields["root"].get_default(call_default_factory=True).model_dump()
    return cls.model_construct().model_dump()


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
        params_model: the :class:`Params` model of the workload parameters (dataset path, sizes,
            ...), a class or ``"module:Class"``; :attr:`params` are its defaults.
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
    params_model: type[BaseModel] | str | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    token_latencies: bool = False
    sut_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    query_timeout_s: float | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Default workload parameters (a fresh dict of the model's defaults)."""
        return param_defaults(self.params_model)


@dataclass(frozen=True)
class SUTSpec:
    """A reference system under test.

    Attributes:
        name: registry key, e.g. ``"ultralytics_yolo"``.
        description: one line for ``raybench list``.
        entry: ``"module:Class"``; ``Class(params: dict)`` implements the SUT protocol.
        extra: the pip extra that installs its dependencies (``None`` for core-only SUTs).
        params_model: the :class:`Params` model of its parameters (a class or ``"module:Class"``);
            :attr:`params` are its defaults.
        inline: on Ray, run the SUT inside each load-generator shard instead of as separate
            replica actors (clients of a remote endpoint, e.g. an HTTP connection pool per shard).
    """

    name: str
    description: str
    entry: str
    extra: str | None = None
    params_model: type[BaseModel] | str | None = None
    inline: bool = False

    @property
    def params(self) -> dict[str, Any]:
        """Default parameters (a fresh dict of the model's defaults)."""
        return param_defaults(self.params_model)


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
