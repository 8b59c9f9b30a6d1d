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
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BUNDLED_MLPERF_CONF", "MLPERF_CONF_ONLY_KEYS", "MODES", "MODE_CODES", "ROUND_SEEDS", "SCENARIOS", "ConfEntry",
    "SettingsError", "TestSettings", "apply_conf", "apply_overrides", "expected_qps",
    "load_settings", "max_async_queries", "offline_samples_per_query", "parse_conf",
    "resolve_settings", "samples_per_query", "target_latency_ns", "target_latency_percentile",
    "to_effective_dict", "to_requested_dict", "validate",
]

log = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------- conf parsing


@dataclass(frozen=True, slots=True)
class ConfEntry:
    """One ``model.scenario.key = value`` line. ``raw`` keeps the value's text."""

    model: str
    scenario: str
    key: str
    value: float | int
    source: str
    line_no: int
    raw: str = ""


# LoadGen accepts what C strtoul(base 0) or strtod accept in full. We accept decimal
# and hex integers and plain decimal floats; octal-looking "010" (8 to strtoull, 10 to
# strtod) and inf/nan are rejected as ambiguous or meaningless.
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


def parse_conf(text: str, source: str) -> list[ConfEntry]:
    """Parse mlperf.conf / user.conf text into entries, in file order.

    Each non-blank line (after removing a ``#`` comment) must be exactly three
    whitespace-separated tokens ``model.scenario.key = value``. Spaces around
    ``=`` are required because LoadGen splits on whitespace and silently drops
    ``key=value``; rejecting it keeps a conf that works here working in LoadGen.
    The model may itself contain dots (the last two dots split off scenario/key).

    Raises:
        SettingsError: ``"<source>:<line>: ..."`` for a malformed line or value.
    """
    entries: list[ConfEntry] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        where = f"{source}:{line_no}"
        if len(tokens) != 3 or tokens[1] != "=":
            raise SettingsError(f"{where}: expected 'model.scenario.key = value' (spaces around '='), "
                                f"got {line.strip()!r}")
        parts = tokens[0].rsplit(".", 2)
        if len(parts) != 3 or not all(parts):
            raise SettingsError(f"{where}: key {tokens[0]!r} must have the form model.scenario.key")
        value = _parse_value(tokens[2], where)
        entries.append(ConfEntry(parts[0], parts[1], parts[2], value, source, line_no, tokens[2]))
    return entries


# ----------------------------------------------------------------------------- conf applying

# (conf key, lookup scenario or None = the run's scenario, field, kind, multiplier, gate field)
# in LoadGen's FromConfig order. Kinds: u64 = strtoull(value) * int(mult); f64 = strtod(value)
# * mult; eq1 = (value == 1); ne0 = (value != 0); mode = LoadGen enum code.
_RULES: tuple[tuple[str, str | None, str, str, float, str | None], ...] = (
    ("mode", None, "mode", "mode", 1, None),
    ("qsl_rng_seed", None, "qsl_rng_seed", "u64", 1, None),
    ("sample_index_rng_seed", None, "sample_index_rng_seed", "u64", 1, None),
    ("schedule_rng_seed", None, "schedule_rng_seed", "u64", 1, None),
    ("accuracy_log_probability", None, "accuracy_log_probability", "f64", 0.01, None),
    ("test05", None, "test05", "eq1", 1, None),
    ("test05_qsl_rng_seed", None, "test05_qsl_rng_seed", "u64", 1, None),
    ("test05_sample_index_rng_seed", None, "test05_sample_index_rng_seed", "u64", 1, None),
    ("test05_schedule_rng_seed", None, "test05_schedule_rng_seed", "u64", 1, None),
    ("use_token_latencies", None, "use_token_latencies", "eq1", 1, None),
    ("ttft_latency", "Server", "server_ttft_latency", "u64", 1e6, "use_token_latencies"),
    ("tpot_latency", "Server", "server_tpot_latency", "u64", 1e6, "use_token_latencies"),
    ("infer_token_latencies", None, "infer_token_latencies", "eq1", 1, None),
    ("token_latency_scaling_factor", None, "token_latency_scaling_factor", "u64", 1,
     "infer_token_latencies"),
    ("target_latency_percentile", "SingleStream", "single_stream_target_latency_percentile", "f64",
     0.01, None),
    ("target_latency_percentile", "MultiStream", "multi_stream_target_latency_percentile", "f64",
     0.01, None),
    ("samples_per_query", "MultiStream", "multi_stream_samples_per_query", "u64", 1, None),
    ("target_latency_percentile", "Server", "server_target_latency_percentile", "f64", 0.01, None),
    ("target_latency", "Server", "server_target_latency_ns", "u64", 1e6, None),
    ("performance_issue_unique", None, "performance_issue_unique", "ne0", 1, None),
    ("performance_issue_same", None, "performance_issue_same", "ne0", 1, None),
    ("performance_issue_same_index", None, "performance_issue_same_index", "u64", 1, None),
    ("sample_concatenate_permutation", None, "sample_concatenate_permutation", "eq1", 1, None),
    ("coalesce_queries", "Server", "server_coalesce_queries", "ne0", 1, None),
    ("max_async_queries", "Server", "server_max_async_queries", "u64", 1, None),
    ("min_duration", None, "min_duration_ms", "u64", 1, None),
    ("max_duration", None, "max_duration_ms", "u64", 1, None),
    ("min_query_count", None, "min_query_count", "u64", 1, None),
    ("max_query_count", None, "max_query_count", "u64", 1, None),
    ("performance_sample_count_override", None, "performance_sample_count_override", "u64", 1, None),
    ("accuracy_sample_count_override", None, "accuracy_sample_count_override", "u64", 1, None),
    ("target_latency", "SingleStream", "single_stream_expected_latency_ns", "f64", 1e6, None),
    ("target_latency", "MultiStream", "multi_stream_expected_latency_ns", "f64", 1e6, None),
    ("target_qps", "Server", "server_target_qps", "f64", 1, None),
    ("target_qps", "Offline", "offline_expected_qps", "f64", 1, None),
    ("print_timestamps", None, "print_timestamps", "ne0", 1, None),
    ("accuracy_log_rng_seed", None, "accuracy_log_rng_seed", "u64", 1, None),
    ("accuracy_log_sampling_target", None, "accuracy_log_sampling_target", "u64", 1, None),
    ("target_concurrency", "Concurrency", "target_concurrency", "u64", 1, None),  # extension
)
#: Keys LoadGen reads only from mlperf.conf (conf_type 0).
MLPERF_CONF_ONLY_KEYS = frozenset({
    "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability",
    "test05", "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
})
# Keys that appear in mlperf.conf but that LoadGen's parser never reads.
_KNOWN_UNUSED_KEYS = frozenset({"target_duration"})
_KNOWN_KEYS = frozenset(r[0] for r in _RULES) | _KNOWN_UNUSED_KEYS


def _lookup(table: Mapping[tuple[str, str, str], ConfEntry], model: str | None, scenario: str,
            key: str) -> ConfEntry | None:
    """LoadGen's precedence: model.scenario > *.scenario > model.* > *.*."""
    for m, s in ((model, scenario), ("*", scenario), (model, "*"), ("*", "*")):
        if m is not None and (entry := table.get((m, s, key))) is not None:
            return entry
    return None


def _loadgen_uint(entry: ConfEntry) -> tuple[int, str | None]:
    """The value C ``strtoull`` gives (the leading integer of the text), and a warning
    when that differs from the number written."""
    where = f"{entry.source}:{entry.line_no}"
    warning = None
    if isinstance(entry.value, int):
        value = entry.value
    else:
        m = re.match(r"([+-]?)([0-9]*)", entry.raw or repr(entry.value))
        value = int(m.group(2) or "0") * (-1 if m.group(1) == "-" else 1)
        if value != entry.value:
            warning = f"{where}: {entry.key} = {entry.raw} is not an integer; LoadGen reads it as {value}"
    if not 0 <= value <= _U64_MAX:
        raise SettingsError(f"{where}: {entry.key} must be an integer in [0, 2**64), got {entry.raw!r}")
    return value, warning


def apply_conf(settings: TestSettings, entries: Iterable[ConfEntry], model: str | None,
               scenario: str, *, is_mlperf_conf: bool) -> list[str]:
    """Apply one conf file's entries to ``settings`` in place, as LoadGen's FromConfig.

    Args:
        settings: Updated in place.
        entries: All entries of ONE file (precedence is resolved within a file;
            the last duplicate line wins).
        model: Model name as in mlperf.conf (``llama3_1-8b``); None = wildcards only.
        scenario: The run scenario, used for keys that are not scenario-bound.
        is_mlperf_conf: True for mlperf.conf; otherwise seed-like keys are ignored.

    Returns:
        Warnings ``"<source>:<line>: ..."`` sorted by line: ignored or unknown keys,
        unknown scenario names, values LoadGen truncates.

    Raises:
        SettingsError: a negative/oversized integer value or an unknown ``mode`` code.
    """
    warnings: list[tuple[int, str]] = []

    def warn(e: ConfEntry, msg: str) -> None:
        warnings.append((e.line_no, f"{e.source}:{e.line_no}: {msg}"))

    table: dict[tuple[str, str, str], ConfEntry] = {}
    for e in entries:
        if e.key not in _KNOWN_KEYS:
            warn(e, f"unknown key {e.key!r} ignored")
        elif e.scenario != "*" and e.scenario not in SCENARIOS:
            warn(e, f"unknown scenario {e.scenario!r}; line ignored")
        elif not is_mlperf_conf and e.key in MLPERF_CONF_ONLY_KEYS:
            warn(e, f"{e.key} is read only from mlperf.conf; ignored")
        else:
            table[(e.model, e.scenario, e.key)] = e
    for key, fixed_scenario, field, kind, mult, gate in _RULES:
        entry = _lookup(table, model, fixed_scenario or scenario, key)
        if entry is None:
            continue
        if gate is not None and not getattr(settings, gate):
            warn(entry, f"{key} ignored because {gate} is 0")
            continue
        if kind == "f64":
            setattr(settings, field, float(entry.value) * mult)
            continue
        value, truncated = _loadgen_uint(entry)
        if truncated:
            warnings.append((entry.line_no, truncated))
        if kind == "u64":
            setattr(settings, field, value * int(mult))
        elif kind == "eq1":
            setattr(settings, field, value == 1)
        elif kind == "ne0":
            setattr(settings, field, value != 0)
        elif value in MODE_CODES:
            settings.mode = MODE_CODES[value]
        else:
            codes = ", ".join(f"{k}={v}" for k, v in MODE_CODES.items())
            raise SettingsError(f"{entry.source}:{entry.line_no}: mode must be 0-3 ({codes}), got {entry.raw}")
    return [msg for _, msg in sorted(warnings, key=lambda w: w[0])]


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
            raise SettingsError(f"unknown TestSettings field {name!r} in overrides")
        if name == "scenario":
            raise SettingsError("override 'scenario' is not allowed; pass scenario= to load_settings")
        setattr(settings, name, _coerce(name, value))


def _read_conf(path: str | Path, what: str) -> list[ConfEntry]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    return parse_conf(text, str(p))


def resolve_settings(*, model: str | None, scenario: str, mode: str | None = "PerformanceOnly",
                     mlperf_conf: str | Path | None = None, user_conf: str | Path | None = None,
                     overrides: Mapping[str, Any] | None = None,
                     round: str | None = "v6.1") -> tuple[TestSettings, list[str]]:
    """Like :func:`load_settings` but also return the warnings instead of logging them."""
    if scenario not in SCENARIOS:
        raise SettingsError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if mode is not None and mode not in MODES:
        raise SettingsError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if round is not None and round not in ROUND_SEEDS:
        raise SettingsError(f"round must be one of {', '.join(ROUND_SEEDS)} or None, got {round!r}")
    settings = TestSettings(scenario=scenario)
    warnings: list[str] = []
    if not (isinstance(mlperf_conf, str) and mlperf_conf.lower() == "none"):
        path = BUNDLED_MLPERF_CONF if mlperf_conf is None else mlperf_conf
        entries = _read_conf(path, "mlperf_conf")
        warnings += apply_conf(settings, entries, model, scenario, is_mlperf_conf=True)
    if round is not None:
        seeds = ROUND_SEEDS[round]
        current = (settings.qsl_rng_seed, settings.sample_index_rng_seed, settings.schedule_rng_seed)
        if current != (0, 0, 0) and current != seeds:
            warnings.append(f"mlperf.conf seeds {current} replaced by the {round} round seeds {seeds}")
        settings.qsl_rng_seed, settings.sample_index_rng_seed, settings.schedule_rng_seed = seeds
    if user_conf is not None:
        entries = _read_conf(user_conf, "user_conf")
        warnings += apply_conf(settings, entries, model, scenario, is_mlperf_conf=False)
    if mode is not None:
        settings.mode = mode
    apply_overrides(settings, overrides or {})
    validate(settings)
    return settings, warnings


def load_settings(*, model: str | None, scenario: str, mode: str | None = "PerformanceOnly",
                  mlperf_conf: str | Path | None = None, user_conf: str | Path | None = None,
                  overrides: Mapping[str, Any] | None = None, round: str | None = "v6.1") -> TestSettings:
    """Build validated TestSettings: defaults -> mlperf.conf -> round seeds -> user.conf -> mode -> overrides.

    Args:
        model: mlperf.conf model name (``dlrm-v3``, ``llama3_1-8b-interactive``); None = wildcards only.
        scenario: One of :data:`SCENARIOS`.
        mode: One of :data:`MODES`; applied after the conf files (as reference harnesses set
            ``settings.mode`` after ``FromConfig``). None keeps the conf's ``mode`` key.
        mlperf_conf: Path, None for the bundled copy, or ``"none"`` to skip it.
        user_conf: Optional user.conf path.
        overrides: TestSettings field names to values, applied last.
        round: Seed set from :data:`ROUND_SEEDS`; None keeps mlperf.conf's seeds.

    Raises:
        SettingsError: unreadable/malformed conf, unknown override field, invalid value.
    """
    settings, warnings = resolve_settings(model=model, scenario=scenario, mode=mode,
                                          mlperf_conf=mlperf_conf, user_conf=user_conf,
                                          overrides=overrides, round=round)
    for w in warnings:
        log.warning("%s", w)
    return settings


# ----------------------------------------------------------------------------- derived values


def target_latency_ns(settings: TestSettings) -> int:
    """LoadGen's effective latency bound: ``server_target_latency_ns`` for Server, else 0."""
    return settings.server_target_latency_ns if settings.scenario == "Server" else 0


def target_latency_percentile(settings: TestSettings) -> float:
    """Percentile reported/early-stopped: SS/MS/Server own field, Offline 0.99 (as LoadGen).

    Concurrency (our extension) uses ``server_target_latency_percentile``.
    """
    return {
        "SingleStream": settings.single_stream_target_latency_percentile,
        "MultiStream": settings.multi_stream_target_latency_percentile,
        "Offline": 0.99,
    }.get(settings.scenario, settings.server_target_latency_percentile)


def samples_per_query(settings: TestSettings) -> int:
    """MultiStream: ``multi_stream_samples_per_query``; Offline: see offline_samples_per_query; else 1."""
    return settings.multi_stream_samples_per_query if settings.scenario == "MultiStream" else 1


_samples_per_query_of = samples_per_query  # to_effective_dict's keyword shadows the name


def expected_qps(settings: TestSettings) -> float:
    """LoadGen's effective ``target_qps``, which sizes the generated query set.

    SS/MS: ``1e9 / expected_latency_ns``; Server: ``server_target_qps``; Offline and
    Concurrency (a saturating closed loop): ``offline_expected_qps``.
    """
    if settings.scenario == "SingleStream":
        return 1e9 / settings.single_stream_expected_latency_ns
    if settings.scenario == "MultiStream":
        return 1e9 / settings.multi_stream_expected_latency_ns
    if settings.scenario == "Server":
        return settings.server_target_qps
    return settings.offline_expected_qps


def max_async_queries(settings: TestSettings) -> int:
    """Queries in flight: Server ``server_max_async_queries`` (0 = unlimited),
    Concurrency ``target_concurrency``, otherwise 1."""
    if settings.scenario == "Server":
        return settings.server_max_async_queries
    return settings.target_concurrency if settings.scenario == "Concurrency" else 1


def offline_samples_per_query(settings: TestSettings, performance_sample_count: int | None = None) -> int:
    """Offline query size: ``max(min_query_count, uint64(1.1 * min_duration_s * qps))``.

    The 1.1 slack is LoadGen's kSlack so the run outlasts min_duration; with
    ``performance_issue_unique`` it is the performance sample count instead.
    """
    if settings.performance_issue_unique:
        if performance_sample_count is None:
            raise SettingsError("performance_sample_count is needed when performance_issue_unique is set")
        return performance_sample_count
    target = int(1.1 * (settings.min_duration_ms / 1000.0) * settings.offline_expected_qps)
    return max(settings.min_query_count, target)


def to_requested_dict(settings: TestSettings) -> dict[str, Any]:
    """The ``requested_*`` keys and values in LoadGen's LogRequestedTestSettings order."""
    s = settings
    out: dict[str, Any] = {"requested_scenario": s.scenario, "requested_test_mode": s.mode}
    per_scenario = {
        "SingleStream": ("single_stream_expected_latency_ns", "single_stream_target_latency_percentile"),
        "MultiStream": ("multi_stream_expected_latency_ns", "multi_stream_target_latency_percentile",
                        "multi_stream_samples_per_query"),
        "Server": ("server_target_qps", "server_target_latency_ns", "server_target_latency_percentile",
                   "server_coalesce_queries", "server_find_peak_qps_decimals_of_precision",
                   "server_find_peak_qps_boundary_step_size", "server_max_async_queries",
                   "server_num_issue_query_threads"),
        "Offline": ("offline_expected_qps",),
        "Concurrency": ("target_concurrency",),
    }[s.scenario]
    common = ("min_duration_ms", "max_duration_ms", "min_query_count", "max_query_count", "qsl_rng_seed",
              "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_rng_seed",
              "accuracy_log_probability", "accuracy_log_sampling_target", "print_timestamps",
              "performance_issue_unique", "performance_issue_same", "performance_issue_same_index",
              "performance_sample_count_override", "accuracy_sample_count_override",
              "sample_concatenate_permutation")
    for name in per_scenario + common:
        out[f"requested_{name}"] = getattr(s, name)
    if s.use_token_latencies:
        out["requested_use_token_latencies"] = True
        if s.scenario != "Offline":
            out["requested_server_ttft_latency"] = s.server_ttft_latency
            out["requested_server_tpot_latency"] = s.server_tpot_latency
    return out


def to_effective_dict(settings: TestSettings, *, qsl_performance_sample_count: int | None = None,
                      qsl_total_sample_count: int | None = None, samples_per_query: int | None = None,
                      target_duration_ms: int | None = None,
                      min_query_count: int | None = None) -> dict[str, Any]:
    """The ``effective_*`` keys and values in LoadGen's LogEffectiveSettings order.

    Computed as TestSettingsInternal does: Offline gets one query of
    :func:`offline_samples_per_query` samples with ``min_query_count = 1`` and
    ``target_duration = 0``; SingleStream with ``sample_concatenate_permutation``
    raises min_query_count to ``max(mqc, uint64(2.0 * min_duration_s * qps))`` and then
    adds ``psc - mqc % psc`` (psc = the QSL's performance count, even when already a
    multiple); ``min_sample_count = min_query_count * samples_per_query``.
    ``performance_sample_count`` is the override if non-zero else the QSL's count (same
    for accuracy). Keyword args replace computed values when the scenario code knows better.

    Raises:
        SettingsError: a QSL count is needed but not given.
    """
    s = settings
    perf_count = s.performance_sample_count_override or qsl_performance_sample_count
    acc_count = s.accuracy_sample_count_override or qsl_total_sample_count
    if perf_count is None:
        raise SettingsError("qsl_performance_sample_count is needed (performance_sample_count_override is 0)")
    if acc_count is None:
        raise SettingsError("qsl_total_sample_count is needed (accuracy_sample_count_override is 0)")
    spq = _samples_per_query_of(s)
    duration = s.min_duration_ms
    mqc = s.min_query_count
    if s.scenario == "Offline":
        spq = offline_samples_per_query(s, perf_count)
        mqc, duration = 1, 0
    if s.sample_concatenate_permutation and s.scenario == "SingleStream":
        if not qsl_performance_sample_count:
            raise SettingsError("qsl_performance_sample_count is needed for SingleStream "
                                "sample_concatenate_permutation")
        expected = int(2.0 * (duration / 1000.0) * expected_qps(s))
        mqc = max(mqc, expected)
        mqc += qsl_performance_sample_count - mqc % qsl_performance_sample_count
    spq = spq if samples_per_query is None else samples_per_query
    mqc = mqc if min_query_count is None else min_query_count
    duration = duration if target_duration_ms is None else target_duration_ms
    return {
        "effective_scenario": s.scenario,
        "effective_test_mode": s.mode,
        "effective_samples_per_query": spq,
        "effective_target_qps": expected_qps(s),
        "effective_target_latency_ns": target_latency_ns(s),
        "effective_target_latency_percentile": target_latency_percentile(s),
        "effective_max_async_queries": max_async_queries(s),
        "effective_target_duration_ms": duration,
        "effective_min_duration_ms": s.min_duration_ms,
        "effective_max_duration_ms": s.max_duration_ms,
        "effective_min_query_count": mqc,
        "effective_max_query_count": s.max_query_count,
        "effective_min_sample_count": mqc * spq,
        "effective_qsl_rng_seed": s.qsl_rng_seed,
        "effective_sample_index_rng_seed": s.sample_index_rng_seed,
        "effective_schedule_rng_seed": s.schedule_rng_seed,
        "effective_accuracy_log_rng_seed": s.accuracy_log_rng_seed,
        "effective_accuracy_log_probability": s.accuracy_log_probability,
        "effective_accuracy_log_sampling_target": s.accuracy_log_sampling_target,
        "effective_print_timestamps": s.print_timestamps,
        "effective_performance_issue_unique": s.performance_issue_unique,
        "effective_performance_issue_same": s.performance_issue_same,
        "effective_performance_issue_same_index": s.performance_issue_same_index,
        "effective_performance_sample_count": perf_count,
        "effective_accuracy_sample_count": acc_count,
        "effective_sample_concatenate_permutation": s.sample_concatenate_permutation,
    }
