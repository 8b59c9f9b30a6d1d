"""mlperf.conf / user.conf: parsing, LoadGen's lookup rules, and settings resolution.

See :mod:`raybench.core.settings` for the semantics reproduced here (wildcards, units, keys looked
up under a fixed scenario, mlperf.conf-only keys, ``strtoull`` truncation).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raybench.core.settings import (
    _U64_MAX,
    BUNDLED_MLPERF_CONF,
    MODE_CODES,
    MODES,
    ROUND_SEEDS,
    SCENARIOS,
    SettingsError,
    TestSettings,
    _parse_value,
    apply_overrides,
    validate,
)

__all__ = [
    "AUDIT_CONFIG_NAME", "AUDIT_CONFIG_WARNING", "MLPERF_CONF_ONLY_KEYS", "ConfEntry", "apply_audit_config", "apply_conf",
    "load_settings", "parse_conf", "resolve_settings",
]

log = logging.getLogger(__name__)

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


def _read_conf(path: str | Path, what: str) -> list[ConfEntry]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{what}: {p} is not a text conf file (byte 0x{exc.object[exc.start]:02x} at offset "
                            f"{exc.start} is not UTF-8)") from None
    if "\x00" in text:
        raise SettingsError(f"{what}: {p} is not a text conf file (it contains NUL bytes)")
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


#: The file LoadGen's StartTest looks for in the working directory (compliance tests).
AUDIT_CONFIG_NAME = "audit.config"
#: What LoadGen logs (``warning_generic_message``) when it found one.
AUDIT_CONFIG_WARNING = ("Found Audit Config file (audit.config). Overriding TestSettings from audit.config file.")


def apply_audit_config(settings: TestSettings, path: str | Path, scenario: str) -> list[str]:
    """Apply a compliance ``audit.config`` to ``settings`` in place, last, as LoadGen's StartTest.

    LoadGen reads the file after every other setting (mlperf.conf, user.conf and whatever the
    harness set, ``mode`` included), with the generic model ``*``: only ``*.<scenario>.key`` and
    ``*.*.key`` lines apply (a ``model.scenario.key`` line is never looked up), and the keys read
    only from mlperf.conf (seeds, ``accuracy_log_probability``) are ignored. Keys LoadGen does not
    know (``test07_accuracy_threshold``, ``test09_*_output_tokens``: read by the verification
    scripts) come back as warnings.

    Raises:
        SettingsError: ``"<path>:<line>: ..."`` for a malformed line, or naming the file when the
            resulting settings are invalid.
    """
    entries = _read_conf(path, "audit_config")
    warnings = apply_conf(settings, entries, None, scenario, is_mlperf_conf=False)
    warnings += [f"{e.source}:{e.line_no}: {e.model}.{e.scenario}.{e.key} ignored: LoadGen reads audit.config with "
                 "the generic model '*'" for e in entries if e.model != "*"]
    try:
        validate(settings)
    except SettingsError as exc:
        raise SettingsError(f"audit_config: {path}: {exc}") from None
    return warnings


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
