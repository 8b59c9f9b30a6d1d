"""The run configuration: YAML file + ``--set key.path=value`` overrides, validated by pydantic.

Example:
    >>> cfg = load_run_config(None, ["workload.name=synthetic", "sut.name=fake",
    ...                              "scenario=Server", "settings.server_target_qps=200"])
    >>> cfg.settings["server_target_qps"], cfg.scenario.name
    (200, 'Server')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raybench.core.scenarios import SCENARIO_NAMES, Offline, ScenarioConfig, canonical_name

__all__ = ["SCENARIO_NAMES", "ConfigError", "NamedConfig", "RunConfig", "load_run_config", "parse_set", "set_path"]
MODE_ALIASES = {
    "performance": "PerformanceOnly",
    "perf": "PerformanceOnly",
    "accuracy": "AccuracyOnly",
    "acc": "AccuracyOnly",
    "PerformanceOnly": "PerformanceOnly",
    "AccuracyOnly": "AccuracyOnly",
}


_LOWER_NAMES = frozenset(n.lower() for n in SCENARIO_NAMES)
_STRING_KEYS = frozenset({"name", "scenario", "mode", "out", "executor", "user_conf", "mlperf_conf", "model", "round", "address", "run_dir", "audit_config"})


class ConfigError(ValueError):
    """A bad config: the message is one line and names the field or file."""


class NamedConfig(BaseModel):
    """A registry entry by name plus its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class RayConfig(BaseModel):
    """Where and how the Ray executor places shards and SUT replicas.

    ``address`` ``None`` means ``RAY_ADDRESS`` if set, else an embedded local Ray (decided by the
    executor when it connects, and nowhere else).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str | None = None
    shard_resources: dict[str, float] = Field(default_factory=dict)
    shard_label: str | None = None
    placement: Literal["spread", "pack", "node"] = "spread"
    shard_num_cpus: float = 1.0
    replicas: int = 1
    replica_num_cpus: float = 1.0
    replica_num_gpus: float = 0.0
    replica_resources: dict[str, float] = Field(default_factory=dict)
    replica_bundles: list[dict[str, float]] = Field(default_factory=list)
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    init_kwargs: dict[str, Any] = Field(default_factory=dict)
    start_lead_s: float = 2.0
    # Longest a shard, SUT replica or replica placement group may wait for cluster resources before
    # the run fails (exit 2) naming what it waited for; requests no node could ever hold fail at once.
    placement_timeout_s: float = Field(default=120.0, gt=0)
    sut_inline: bool | None = None
    # Per-query messages between shards and SUT replicas: "auto"/"direct" = the authenticated
    # direct TCP channel on every cluster shape (127.0.0.1 on one machine, the node IP otherwise;
    # a per-run secret proves each connection); "ray" = Ray actor calls.
    transport: Literal["auto", "ray", "direct"] = "auto"


class SLOConfig(BaseModel):
    """Per-request service-level objectives for goodput (``slo:`` block, or ``--slo``).

    A successful request meets the SLOs when every one that is set holds: TTFT <= ``ttft_ms``,
    TPOT <= ``tpot_ms``, end-to-end latency <= ``e2el_ms``. Each shard counts those requests and
    their output tokens exactly while it runs (the SLOs are known before the run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    ttft_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    tpot_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    e2el_ms: float | None = Field(None, gt=0, allow_inf_nan=False)

    def to_ns(self) -> dict[str, int]:
        """``{"ttft": ns, "tpot": ns, "e2el": ns}`` for the SLOs that are set."""
        return {k[:-3]: int(round(v * 1e6)) for k, v in (("ttft_ms", self.ttft_ms), ("tpot_ms", self.tpot_ms),
                                                          ("e2el_ms", self.e2el_ms)) if v is not None}


def parse_slo(text: str) -> list[str]:
    """``--slo ttft_ms=500,tpot_ms=50`` -> ``["slo.ttft_ms=500", "slo.tpot_ms=50"]``.

    Raises:
        ConfigError: naming the bad item.
    """
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or key not in SLOConfig.model_fields:
            raise ConfigError(f"--slo {item!r}: expected ttft_ms=..., tpot_ms=... or e2el_ms=... (milliseconds)")
        try:
            float(val)
        except ValueError:
            raise ConfigError(f"--slo {item!r}: {key} must be a number of milliseconds") from None
        out.append(f"slo.{key}={val.strip()}")
    if not out:
        raise ConfigError("--slo: empty (e.g. --slo ttft_ms=500,tpot_ms=50)")
    return out


class RunConfig(BaseModel):
    """Everything that defines one benchmark run.

    Attributes:
        workload: workload name and parameters (dataset path, sizes).
        sut: SUT name and parameters (``None`` = the workload's default SUT).
        scenario: the scenario block (:mod:`raybench.core.scenarios`): ``{name: Server,
            target_qps: 200}``, or just its name; fields that are not the scenario's are refused.
        mode: ``PerformanceOnly`` or ``AccuracyOnly``.
        settings: TestSettings overrides by LoadGen field name (applied last).
        model: the mlperf.conf model key (default: the workload's).
        mlperf_conf / user_conf: conf files (``mlperf_conf: none`` skips the bundled one).
        round: MLPerf round whose seeds to use (``v6.1`` or ``v6.0``).
        audit_config: a compliance ``audit.config`` applied after every other setting, as LoadGen
            does (``None``: ``./audit.config`` if the working directory has one; ``none``: never).
        executor: ``inprocess`` or ``ray``.
        shards: load-generator shards (``None``: one per load node on Ray, 1 in-process).
        out: results root; the run directory is ``out/<utc>-<workload>-<scenario>``.
        query_timeout_s: a query outstanding longer than this is an error and stops the run
            (default: the workload's, else 600 s).
        deadline_grace_s: with ``max_duration``, the run ends at max_duration + grace.
        max_error_rate / lateness_p99_ms: raybench's extra validity limits.
        max_plan_queries / max_planned_duration_s: a plan estimated to be bigger or longer is refused
            before anything is built (a QPS typed with the wrong exponent); raise them to run it.
        records: per-sample records: ``none`` (default: shards ship only histograms and counters,
            so the coordinator's memory stays flat), ``shard`` (each shard writes
            ``records-shard<k>.npz`` into the run directory, or its host's temp directory,
            fetched at the end) or ``all`` (shipped to the coordinator, written as ``records.npz``).
        slo: per-request SLOs for goodput (:class:`SLOConfig`; ``None`` = no goodput).
        accuracy: score the accuracy log after an accuracy-mode run.
        report: write report.html at the end.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    workload: NamedConfig
    sut: NamedConfig | None = None
    scenario: ScenarioConfig = Field(default_factory=Offline)
    mode: str = "PerformanceOnly"
    settings: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    mlperf_conf: str | None = None
    user_conf: str | None = None
    audit_config: str | None = None
    round: str = "v6.1"
    executor: Literal["inprocess", "ray"] = "ray"
    shards: int | None = None
    out: str = "results"
    run_dir: str | None = None
    query_timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    deadline_grace_s: float = Field(30.0, ge=0, allow_inf_nan=False)
    max_error_rate: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    lateness_p99_ms: float = Field(10.0, gt=0, allow_inf_nan=False)
    records: Literal["none", "shard", "all"] = "none"
    slo: SLOConfig | None = None
    max_plan_queries: int = Field(200_000_000, ge=1)
    max_planned_duration_s: float = Field(7 * 86400.0, gt=0, allow_inf_nan=False)
    accuracy: bool = True
    report: bool = True
    ray: RayConfig = Field(default_factory=RayConfig)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _scenario_name(cls, data: Any) -> Any:
        """``scenario: server`` is ``scenario: {name: Server}``; names are matched case-insensitively."""
        if isinstance(data, dict) and "scenario" in data:
            sc = data["scenario"]
            if isinstance(sc, str):
                sc = {"name": sc}
            if isinstance(sc, dict) and isinstance(sc.get("name"), str):
                name = sc["name"]
                sc = {**sc, "name": canonical_name(name) if name.lower() in _LOWER_NAMES else name}
            data = {**data, "scenario": sc}
        return data

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v in MODE_ALIASES:
            return MODE_ALIASES[v]
        raise ValueError("must be PerformanceOnly or AccuracyOnly")

    @field_validator("shards")
    @classmethod
    def _shards(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be >= 1")
        return v


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (numbers, bools, lists...)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key")
    keys = key.split(".")
    if keys[-1] in _STRING_KEYS or keys in (["workload"], ["sut"]):
        return keys, raw.strip()  # names stay strings ("null" is the null SUT, not None)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def set_path(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]... = value``, creating dicts on the way.

    ``workload=x`` / ``sut=x`` / ``scenario=x`` are shorthand for ``workload.name=x`` (...).
    """
    if path and path[0] == "scenario" and isinstance(data.get("scenario"), str):
        data["scenario"] = {"name": data["scenario"]}
    if len(path) == 1 and path[0] in ("workload", "sut", "scenario") and not isinstance(value, dict):
        path = [path[0], "name"]
    node = data
    for i, key in enumerate(path[:-1]):
        nxt = node.get(key)
        if nxt is None:
            nxt = {}
            node[key] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping")
        node = nxt
    node[path[-1]] = value


def _format_validation(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
        if err["loc"][:1] == ("scenario",) and len(err["loc"]) == 3:
            loc = f"scenario.{err['loc'][2]}"
            msg = f"unknown field for scenario {err['loc'][1]}"
    elif err["type"] == "union_tag_invalid":
        msg = f"must be one of {', '.join(SCENARIO_NAMES)}"
        loc = "scenario.name" if loc == "scenario" else loc
    elif err["loc"][:1] == ("scenario",) and len(err["loc"]) == 3:
        loc = f"scenario.{err['loc'][2]}"
    return f"{source}: {loc}: {msg}"


def load_run_config(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Read a YAML run config (optional), apply ``--set`` overrides, validate.

    Raises:
        ConfigError: one line naming the file or the field.
    """
    data: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        source = str(path)
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}:{where} invalid YAML") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        for k, v in loaded.items():
            data[k] = v
    for k in ("workload", "sut", "scenario"):
        if isinstance(data.get(k), str):
            data[k] = {"name": data[k]}
    for item in overrides:
        keys, value = parse_set(item)
        set_path(data, keys, value)
    if not isinstance(data.get("workload"), dict) or not data["workload"].get("name"):
        raise ConfigError(f"{source}: workload.name: required (e.g. --workload synthetic)")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from None
