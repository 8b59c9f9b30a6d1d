"""LoadGen's ``TestSettings`` and the mlperf.conf / user.conf reader.

The field names, defaults and conf semantics follow MLPerf LoadGen 6.0.17
(``loadgen/test_settings.h`` and ``TestSettings::FromConfig`` in
``loadgen/test_settings_internal.cc``), so that a user.conf means the same
thing here as it does to LoadGen and the ``requested_*`` / ``effective_*``
values we log match what LoadGen would log.

Conf semantics that matter (all reproduced here):

* A conf line is ``model.scenario.key = value``; ``*`` is a wildcard for the
  model or the scenario. A key is looked up as ``model.scenario`` >
  ``*.scenario`` > ``model.*`` > ``*.*``; within one file the last line wins.
  Each file is looked up on its own, so a ``*.Server.x`` in user.conf beats a
  ``model.Server.x`` in mlperf.conf (files are applied in order).
* Units: ``target_latency``, ``ttft_latency``, ``tpot_latency`` are in ms
  (stored in ns, times 1e6); ``min_duration`` / ``max_duration`` are in ms and
  stored in ms; percentiles and ``accuracy_log_probability`` are in percent
  (stored as a fraction, times 0.01).
* Some keys are looked up under a fixed scenario whatever the run scenario:
  ``target_latency`` (SingleStream/MultiStream: expected latency; Server: the
  latency bound), ``target_latency_percentile``, ``samples_per_query``
  (MultiStream), ``target_qps`` (Server, Offline), ``ttft_latency`` /
  ``tpot_latency`` / ``coalesce_queries`` / ``max_async_queries`` (Server).
* Seeds, ``accuracy_log_probability`` and the ``test05*`` keys are read only
  from mlperf.conf; LoadGen silently ignores them in user.conf (we warn).
* Integer fields read the value with C ``strtoull``, which stops at the first
  non-digit: ``min_query_count = 1e3`` is 1 and ``Server.target_latency = 12.5``
  is 12 ms in LoadGen. We reproduce that and return a warning.

Our extension: scenario ``"Concurrency"`` (closed loop, ``target_concurrency``
queries in flight; conf key ``*.Concurrency.target_concurrency``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BUNDLED_MLPERF_CONF", "MODES", "MODE_CODES", "ROUND_SEEDS", "SCENARIOS", "SettingsError", "TestSettings",
    "apply_overrides", "validate",
]


SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline", "Concurrency")
MODES = ("SubmissionRun", "AccuracyOnly", "PerformanceOnly", "FindPeakPerformance")
#: The conf key ``mode`` takes LoadGen's enum value.
MODE_CODES = {0: "SubmissionRun", 1: "AccuracyOnly", 2: "PerformanceOnly", 3: "FindPeakPerformance"}
#: (qsl_rng_seed, sample_index_rng_seed, schedule_rng_seed) per MLPerf round; v6.0 is the
#: submission checker's table, v6.1 the seeds of the current (bundled) mlperf.conf.
ROUND_SEEDS: dict[str, tuple[int, int, int]] = {
    "v6.0": (2465351861681999779, 14276810075590677512, 3936089224930324775),
    "v6.1": (2085463073848966840, 2747215439041700203, 16159082839903944936),
}
BUNDLED_MLPERF_CONF = Path(__file__).parent / "data" / "mlperf.conf"

_U64_MAX = 2**64 - 1
_I32_MAX = 2**31 - 1


class SettingsError(ValueError):
    """Bad settings or conf input; the message names the field or file:line."""


@dataclass(slots=True)
class TestSettings:
    """LoadGen's ``mlperf::TestSettings`` (same names, defaults and units).

    Latencies are ns, durations ms, percentiles fractions. ``*_expected_latency_ns``
    and the QPS fields are doubles in LoadGen, the rest unsigned integers or bools.
    ``target_concurrency`` is our extension for the ``Concurrency`` scenario.
    """

    __test__ = False  # not a pytest test class despite the name

    scenario: str = "SingleStream"
    mode: str = "PerformanceOnly"
    single_stream_expected_latency_ns: float = 1_000_000.0
    single_stream_target_latency_percentile: float = 0.90
    multi_stream_expected_latency_ns: float = 8_000_000.0
    multi_stream_target_latency_percentile: float = 0.99
    multi_stream_samples_per_query: int = 8
    server_target_qps: float = 1.0
    server_target_latency_ns: int = 100_000_000
    server_target_latency_percentile: float = 0.99
    server_coalesce_queries: bool = False
    server_find_peak_qps_decimals_of_precision: int = 1
    server_find_peak_qps_boundary_step_size: float = 1.0
    server_max_async_queries: int = 0  # 0 = unlimited
    server_num_issue_query_threads: int = 0
    offline_expected_qps: float = 1.0
    sample_concatenate_permutation: bool = False
    min_duration_ms: int = 10_000
    max_duration_ms: int = 0  # 0 = unlimited
    min_query_count: int = 100
    max_query_count: int = 0  # 0 = unlimited
    qsl_rng_seed: int = 0
    sample_index_rng_seed: int = 0
    schedule_rng_seed: int = 0
    accuracy_log_rng_seed: int = 0
    accuracy_log_probability: float = 0.0
    accuracy_log_sampling_target: int = 0
    test05: bool = False
    test05_qsl_rng_seed: int = 0
    test05_sample_index_rng_seed: int = 0
    test05_schedule_rng_seed: int = 0
    print_timestamps: bool = False
    performance_issue_unique: bool = False
    performance_issue_same: bool = False
    performance_issue_same_index: int = 0
    performance_sample_count_override: int = 0
    accuracy_sample_count_override: int = 0
    use_token_latencies: bool = False
    server_ttft_latency: int = 100_000_000
    server_tpot_latency: int = 100_000_000
    infer_token_latencies: bool = False
    token_latency_scaling_factor: int = 0
    target_concurrency: int = 1


_FLOAT_FIELDS = frozenset({
    "single_stream_expected_latency_ns", "single_stream_target_latency_percentile",
    "multi_stream_expected_latency_ns", "multi_stream_target_latency_percentile",
    "server_target_qps", "server_target_latency_percentile",
    "server_find_peak_qps_boundary_step_size", "offline_expected_qps", "accuracy_log_probability",
})
_BOOL_FIELDS = frozenset(f.name for f in dataclasses.fields(TestSettings) if f.type == "bool")
_STR_FIELDS = frozenset({"scenario", "mode"})
_I32_FIELDS = frozenset({"server_find_peak_qps_decimals_of_precision"})
_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TestSettings))
_U64_FIELDS = frozenset(_FIELD_NAMES) - _FLOAT_FIELDS - _BOOL_FIELDS - _STR_FIELDS - _I32_FIELDS


# ----------------------------------------------------------------------------- validation


def validate(settings: TestSettings) -> None:
    """Check every field's type and range; raise ``SettingsError`` naming the field.

    Ranges are what the scenarios need to be well defined: percentiles in (0, 1)
    (early stopping divides by ``log(p)``), rates and expected latencies > 0
    (``qps = 1e9 / expected_latency_ns``), unsigned fields in [0, 2**64).
    """
    for name in _FIELD_NAMES:
        v = getattr(settings, name)
        where = f"TestSettings.{name}"
        if name in _STR_FIELDS:
            allowed = SCENARIOS if name == "scenario" else MODES
            if v not in allowed:
                raise SettingsError(f"{where} must be one of {', '.join(allowed)}, got {v!r}")
        elif name in _BOOL_FIELDS:
            if not isinstance(v, bool):
                raise SettingsError(f"{where} must be a bool, got {v!r}")
        elif name in _FLOAT_FIELDS:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise SettingsError(f"{where} must be a finite number, got {v!r}")
        else:
            hi = _I32_MAX if name in _I32_FIELDS else _U64_MAX
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise SettingsError(f"{where} must be an integer in [0, {hi}], got {v!r}")
    for name in ("single_stream_target_latency_percentile", "multi_stream_target_latency_percentile",
                 "server_target_latency_percentile"):
        if not 0.0 < getattr(settings, name) < 1.0:
            raise SettingsError(f"TestSettings.{name} must be in (0, 1), got {getattr(settings, name)!r}")
    for name in ("single_stream_expected_latency_ns", "multi_stream_expected_latency_ns",
                 "server_target_qps", "offline_expected_qps", "server_find_peak_qps_boundary_step_size"):
        if not getattr(settings, name) > 0:
            raise SettingsError(f"TestSettings.{name} must be > 0, got {getattr(settings, name)!r}")
    if not 0.0 <= settings.accuracy_log_probability <= 1.0:
        raise SettingsError(f"TestSettings.accuracy_log_probability must be in [0, 1], "
                            f"got {settings.accuracy_log_probability!r}")
    for name in ("multi_stream_samples_per_query", "target_concurrency"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"TestSettings.{name} must be >= 1, got {getattr(settings, name)!r}")
    if settings.performance_issue_unique and settings.performance_issue_same:
        raise SettingsError("TestSettings.performance_issue_same cannot be true together with "
                            "performance_issue_unique")


# ----------------------------------------------------------------------------- values

_INT_RE = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_value(text: str, where: str) -> int | float:
    if _INT_RE.fullmatch(text):
        return int(text, 0)
    if re.fullmatch(r"[+-]?0[0-9]+", text):
        raise SettingsError(f"{where}: value {text!r} has a leading zero (LoadGen reads it as octal)")
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    raise SettingsError(f"{where}: value {text!r} must be an integer or a decimal number")


def _coerce(name: str, value: Any) -> Any:
    where = f"override {name!r}"
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string, got {value!r}")
        return value
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise SettingsError(f"{where} must be a bool, got {value!r}")
    if isinstance(value, bool):
        raise SettingsError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = _parse_value(value.strip(), where)
        except SettingsError:
            raise SettingsError(f"{where} must be a number, got {value!r}") from None
    if name in _FLOAT_FIELDS:
        if not isinstance(value, int | float):
            raise SettingsError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise SettingsError(f"{where} must be an integer, got {value!r}")
    return value


def apply_overrides(settings: TestSettings, overrides: Mapping[str, Any]) -> None:
    """Set fields by TestSettings name (``server_target_qps=5``), coercing CLI strings.

    ``scenario`` cannot be overridden: conf values were looked up for it already.
    """
    for name, value in overrides.items():
        if name not in _FIELD_NAMES:
            raise SettingsError(f"settings.{name}: unknown TestSettings field {name!r}")
        if name == "scenario":
            raise SettingsError("override 'scenario' is not allowed; pass scenario= to load_settings")
        setattr(settings, name, _coerce(name, value))
