"""Tests for raybench.core.settings (TestSettings + mlperf.conf/user.conf reader)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from raybench.core import settings as st
from raybench.core.conf import apply_conf, load_settings, parse_conf, resolve_settings
from raybench.core.scenarios import get_scenario
from raybench.core.settings import ROUND_SEEDS, SettingsError, TestSettings, validate


def _effective(s: TestSettings, qsl_performance: int = 64, qsl_total: int = 64):
    """LoadGen's TestSettingsInternal, as the run's scenario computes it."""
    return get_scenario(s.scenario).effective(s, qsl_total, qsl_performance)


def target_latency_ns(s: TestSettings) -> int:
    return _effective(s).target_latency_ns


def samples_per_query(s: TestSettings) -> int:
    return _effective(s).samples_per_query


def to_requested_dict(s: TestSettings) -> dict:
    return get_scenario(s.scenario).requested_items(s)


def to_effective_dict(s: TestSettings, *, qsl_performance_sample_count: int, qsl_total_sample_count: int) -> dict:
    return _effective(s, qsl_performance_sample_count, qsl_total_sample_count).log_items()

V61 = (2085463073848966840, 2747215439041700203, 16159082839903944936)
V60 = (2465351861681999779, 14276810075590677512, 3936089224930324775)


def _seeds(s: TestSettings) -> tuple[int, int, int]:
    return (s.qsl_rng_seed, s.sample_index_rng_seed, s.schedule_rng_seed)


def _apply(text: str, model: str | None, scenario: str, *, mlperf: bool = False,
           settings: TestSettings | None = None) -> tuple[TestSettings, list[str]]:
    s = settings or TestSettings(scenario=scenario)
    w = apply_conf(s, parse_conf(text, "user.conf"), model, scenario, is_mlperf_conf=mlperf)
    return s, w


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_loadgens():
    s = TestSettings()
    assert (s.scenario, s.mode) == ("SingleStream", "PerformanceOnly")
    assert s.single_stream_expected_latency_ns == 1_000_000.0
    assert s.multi_stream_expected_latency_ns == 8_000_000.0
    assert s.multi_stream_samples_per_query == 8
    assert (s.min_duration_ms, s.min_query_count, s.max_duration_ms, s.max_query_count) == (10000, 100, 0, 0)
    assert s.server_target_latency_ns == 100_000_000 and s.server_target_latency_percentile == 0.99
    assert s.server_ttft_latency == 100_000_000 and isinstance(s.server_ttft_latency, int)
    assert s.server_tpot_latency == 100_000_000 and isinstance(s.server_tpot_latency, int)
    assert _seeds(s) == (0, 0, 0) and s.target_concurrency == 1
    validate(s)


# ----------------------------------------------------------------------------- parsing


def test_parse_conf_entries_comments_and_exact_big_ints():
    text = ("# comment\n\n*.*.schedule_rng_seed = 16159082839903944936\n"
            "llama3.1-8b.Server.target_qps = 0.5   # trailing comment\n  yolo.*.mode = 0x2\n")
    e = parse_conf(text, "x.conf")
    assert [(x.model, x.scenario, x.key, x.value, x.line_no) for x in e] == [
        ("*", "*", "schedule_rng_seed", 16159082839903944936, 3),
        ("llama3.1-8b", "Server", "target_qps", 0.5, 4),
        ("yolo", "*", "mode", 2, 5),
    ]
    assert type(e[0].value) is int and e[0].source == "x.conf" and e[1].raw == "0.5"


@pytest.mark.parametrize(("line", "needle"), [
    ("*.Server.target_qps=5", "x.conf:2: expected"),
    ("*.Server.target_qps = ", "x.conf:2: expected"),
    ("*.Server.target_qps = 1 2", "x.conf:2: expected"),
    ("Server.target_qps = 1", "x.conf:2: key 'Server.target_qps'"),
    ("*..target_qps = 1", "x.conf:2: key"),
    ("*.Server.target_qps = fast", "x.conf:2: value 'fast'"),
    ("*.Server.target_qps = inf", "x.conf:2: value 'inf'"),
    ("*.Server.min_duration = 010", "x.conf:2: value '010' has a leading zero"),
])
def test_parse_conf_bad_line_names_file_and_line(line, needle):
    with pytest.raises(SettingsError, match="^" + needle.replace(".", r"\.").replace("(", r"\(")):
        parse_conf(f"# ok\n{line}\n", "x.conf")


# ----------------------------------------------------------------------------- precedence & units


def test_lookup_precedence_all_four_levels():
    levels = ["m.Server.min_query_count = 1", "*.Server.min_query_count = 2",
              "m.*.min_query_count = 3", "*.*.min_query_count = 4"]
    for i in range(4):
        s, w = _apply("\n".join(reversed(levels[i:])), "m", "Server")
        assert s.min_query_count == i + 1 and w == []
    # other models and other scenarios never match
    s, _ = _apply("other.Server.min_query_count = 7\nm.Offline.min_query_count = 8", "m", "Server")
    assert s.min_query_count == 100
    # model=None sees only wildcards
    s, _ = _apply("\n".join(levels), None, "Server")
    assert s.min_query_count == 2


def test_last_duplicate_wins_and_files_apply_in_order():
    s, _ = _apply("*.*.min_duration = 5\n*.*.min_duration = 6", "m", "Offline")
    assert s.min_duration_ms == 6
    # a wildcard in a later file beats a model-specific line of an earlier file (LoadGen: per-file lookup)
    s, _ = _apply("m.Server.min_duration = 1000", "m", "Server", mlperf=True)
    s, _ = _apply("*.*.min_duration = 2000", "m", "Server", settings=s)
    assert s.min_duration_ms == 2000


def test_units_ms_and_percent():
    text = ("*.Server.target_latency = 15\n*.SingleStream.target_latency = 2.5\n"
            "*.MultiStream.target_latency = 80\n*.Server.target_latency_percentile = 97\n"
            "*.SingleStream.target_latency_percentile = 90\n*.*.min_duration = 600000\n"
            "*.Server.target_qps = 12.5\n*.Offline.target_qps = 80.4816666667\n")
    s, w = _apply(text, None, "Offline")
    assert w == []
    assert s.server_target_latency_ns == 15_000_000 and type(s.server_target_latency_ns) is int
    assert s.single_stream_expected_latency_ns == 2_500_000.0
    assert s.multi_stream_expected_latency_ns == 80_000_000.0
    assert s.server_target_latency_percentile == 97 * 0.01  # LoadGen multiplies by 0.01
    assert s.single_stream_target_latency_percentile == 0.9
    assert s.min_duration_ms == 600000  # durations stay in ms
    assert (s.server_target_qps, s.offline_expected_qps) == (12.5, 80.4816666667)


def test_scenario_bound_keys_apply_whatever_the_run_scenario():
    s, _ = _apply("*.Server.target_latency = 15\n*.Server.min_duration = 7", None, "Offline")
    assert s.server_target_latency_ns == 15_000_000  # looked up under fixed "Server"
    assert s.min_duration_ms == 10000  # looked up under the run scenario


def test_integer_fields_truncate_like_strtoull_with_warning():
    s, w = _apply("*.*.min_query_count = 1e3\n*.Server.target_latency = 12.5", None, "Server")
    assert (s.min_query_count, s.server_target_latency_ns) == (1, 12_000_000)
    assert w == ["user.conf:1: min_query_count = 1e3 is not an integer; LoadGen reads it as 1",
                 "user.conf:2: target_latency = 12.5 is not an integer; LoadGen reads it as 12"]


def test_conf_errors_and_warnings():
    with pytest.raises(SettingsError, match=r"^user\.conf:1: min_duration must be an integer"):
        _apply("*.*.min_duration = -5", None, "Server")
    with pytest.raises(SettingsError, match=r"^user\.conf:2: mode must be 0-3"):
        _apply("# x\n*.*.mode = 7", None, "Server")
    s, w = _apply("*.*.mode = 1\n*.*.min_duraton = 5\n*.Sever.min_duration = 5\n"
                  "*.Server.ttft_latency = 50", None, "Server")
    assert s.mode == "AccuracyOnly" and s.min_duration_ms == 10000 and s.server_ttft_latency == 100_000_000
    assert w == ["user.conf:2: unknown key 'min_duraton' ignored",
                 "user.conf:3: unknown scenario 'Sever'; line ignored",
                 "user.conf:4: ttft_latency ignored because use_token_latencies is 0"]


def test_concurrency_extension_key():
    s, _ = _apply("*.Concurrency.target_concurrency = 64\n*.Concurrency.min_duration = 3000", "m",
                  "Concurrency")
    assert (s.target_concurrency, s.min_duration_ms) == (64, 3000)
    assert _effective(s).max_async_queries == 64


# ----------------------------------------------------------------------------- bundled mlperf.conf


@pytest.mark.parametrize("model", ["dlrm-v3", "qwen3-vl-235b-a22b", "llama3_1-8b", "llama3_1-8b-interactive",
                                   "gpt-oss-120b", "yolo", "wan-2.2-t2v-a14b", None])
@pytest.mark.parametrize("scenario", st.SCENARIOS)
def test_bundled_conf_loads_without_warnings(model, scenario):
    s, w = resolve_settings(model=model, scenario=scenario)
    assert w == [] and _seeds(s) == V61


def test_bundled_conf_model_values():
    s = load_settings(model="dlrm-v3", scenario="Server")
    assert s.server_target_latency_ns == 80_000_000 and target_latency_ns(s) == 80_000_000
    assert (s.min_duration_ms, s.server_target_latency_percentile) == (600000, 0.99)
    q = load_settings(model="qwen3-vl-235b-a22b", scenario="Server")
    assert q.server_target_latency_ns == 12_000_000_000 and q.use_token_latencies is False
    assert q.performance_sample_count_override == 48289 and q.sample_concatenate_permutation is True
    assert load_settings(model="qwen3-vl-235b-a22b", scenario="Offline").min_query_count == 48289
    ll = load_settings(model="llama3_1-8b", scenario="Server")
    assert (ll.use_token_latencies, ll.server_ttft_latency, ll.server_tpot_latency) == (True, 2_000_000_000,
                                                                                        100_000_000)
    assert ll.server_target_latency_ns == 0
    li = load_settings(model="llama3_1-8b-interactive", scenario="Server")
    assert (li.server_ttft_latency, li.server_tpot_latency) == (500_000_000, 30_000_000)
    y = load_settings(model="yolo", scenario="MultiStream")
    assert y.performance_sample_count_override == 64
    assert (samples_per_query(y), y.min_query_count, y.multi_stream_target_latency_percentile) == (8, 662, 0.99)
    assert y.multi_stream_expected_latency_ns == 80_000_000.0
    ss = load_settings(model="yolo", scenario="SingleStream")
    assert (ss.single_stream_target_latency_percentile, ss.single_stream_expected_latency_ns) == (0.9, 1e7)
    g = load_settings(model="gpt-oss-120b", scenario="Offline")
    assert (g.performance_sample_count_override, g.accuracy_sample_count_override) == (6396, 4395)


# ----------------------------------------------------------------------------- seeds & rounds


def test_round_seeds_exact():
    assert ROUND_SEEDS == {"v6.0": V60, "v6.1": V61}
    assert all(type(x) is int for x in V60 + V61)
    assert _seeds(load_settings(model="yolo", scenario="Offline")) == V61
    assert _seeds(load_settings(model="yolo", scenario="Offline", round="v6.0")) == V60
    assert _seeds(load_settings(model="yolo", scenario="Offline", mlperf_conf="none")) == V61
    assert _seeds(load_settings(model="yolo", scenario="Offline", round=None)) == V61  # conf's own
    assert _seeds(load_settings(model="yolo", scenario="Offline", mlperf_conf="none", round=None)) == (0, 0, 0)
    _, w = resolve_settings(model="yolo", scenario="Offline", round="v6.0")
    assert len(w) == 1 and "replaced by the v6.0 round seeds" in w[0]


def test_user_conf_cannot_change_seeds(tmp_path):
    uc = tmp_path / "user.conf"
    uc.write_text("*.*.qsl_rng_seed = 1\n*.*.schedule_rng_seed = 2\n*.*.accuracy_log_probability = 50\n"
                  "*.*.accuracy_log_rng_seed = 3\n")
    s, w = resolve_settings(model="yolo", scenario="Offline", user_conf=uc)
    assert _seeds(s) == V61 and s.accuracy_log_probability == 0.0
    assert s.accuracy_log_rng_seed == 3  # allowed in user.conf (audit configs use it)
    assert w == [f"{uc}:1: qsl_rng_seed is read only from mlperf.conf; ignored",
                 f"{uc}:2: schedule_rng_seed is read only from mlperf.conf; ignored",
                 f"{uc}:3: accuracy_log_probability is read only from mlperf.conf; ignored"]
    s, _ = _apply("*.*.accuracy_log_probability = 50", None, "Offline", mlperf=True)
    assert s.accuracy_log_probability == 0.5


# ----------------------------------------------------------------------------- load_settings order


def test_load_order_and_overrides(tmp_path, caplog):
    uc = tmp_path / "user.conf"
    uc.write_text("*.Server.target_qps = 5.0\ndlrm-v3.Server.min_duration = 120000\n*.*.mode = 1\n"
                  "*.*.bogus = 1\n")
    with caplog.at_level(logging.WARNING, logger="raybench.core.settings"):
        s = load_settings(model="dlrm-v3", scenario="Server", user_conf=uc,
                          overrides={"server_target_qps": "7.5", "print_timestamps": "true", "min_query_count": 5.0})
    assert (s.server_target_qps, s.min_duration_ms, s.mode) == (7.5, 120000, "PerformanceOnly")
    assert s.print_timestamps is True and s.min_query_count == 5 and type(s.min_query_count) is int
    assert [r.getMessage() for r in caplog.records] == [f"{uc}:4: unknown key 'bogus' ignored"]
    assert load_settings(model="dlrm-v3", scenario="Server", user_conf=uc, mode=None).mode == "AccuracyOnly"


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"overrides": {"server_target_qpss": 5}}, "unknown TestSettings field 'server_target_qpss'"),
    ({"overrides": {"scenario": "Offline"}}, "override 'scenario' is not allowed"),
    ({"overrides": {"min_query_count": "many"}}, "override 'min_query_count' must be a number"),
    ({"overrides": {"use_token_latencies": 2}}, "override 'use_token_latencies' must be a bool"),
    ({"overrides": {"min_query_count": 2.5}}, "override 'min_query_count' must be an integer"),
    ({"overrides": {"server_target_latency_percentile": 99}},
     r"TestSettings\.server_target_latency_percentile must be in \(0, 1\)"),
    ({"overrides": {"server_target_qps": 0}}, r"TestSettings\.server_target_qps must be > 0"),
    ({"mode": "Perf"}, "mode must be one of"),
    ({"round": "v5.1"}, "round must be one of"),
    ({"user_conf": "/nonexistent/user.conf"}, "user_conf: cannot read /nonexistent/user.conf"),
])
def test_load_settings_errors_name_the_field(kwargs, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings(model="yolo", scenario="Server", **kwargs)
    with pytest.raises(SettingsError, match="scenario must be one of"):
        load_settings(model="yolo", scenario="Interactive")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("min_duration_ms", -1, "must be an integer in"),
    ("qsl_rng_seed", 2**64, "must be an integer in"),
    ("min_query_count", True, "must be an integer in"),
    ("print_timestamps", 1, "must be a bool"),
    ("offline_expected_qps", float("nan"), "must be a finite number"),
    ("accuracy_log_probability", 1.5, r"must be in \[0, 1\]"),
    ("multi_stream_samples_per_query", 0, "must be >= 1"),
    ("target_concurrency", 0, "must be >= 1"),
    ("scenario", "MultiStreamFree", "must be one of"),
])
def test_validate_names_field(field, value, needle):
    s = dataclasses.replace(TestSettings(), **{field: value})
    with pytest.raises(SettingsError, match=rf"^TestSettings\.{field} {needle}"):
        validate(s)
    both = dataclasses.replace(TestSettings(), performance_issue_unique=True, performance_issue_same=True)
    with pytest.raises(SettingsError, match=r"^TestSettings\.performance_issue_same"):
        validate(both)


# ----------------------------------------------------------------------------- helpers


def test_per_scenario_helpers():
    s = TestSettings(single_stream_expected_latency_ns=4e6, multi_stream_expected_latency_ns=5e7,
                     server_target_qps=33.0, offline_expected_qps=900.0, server_max_async_queries=7,
                     server_target_latency_percentile=0.97, target_concurrency=16)
    got = {}
    for sc in st.SCENARIOS:
        x = dataclasses.replace(s, scenario=sc)
        e = _effective(x)
        got[sc] = (e.target_latency_ns, e.target_latency_percentile, e.samples_per_query, e.target_qps,
                   e.max_async_queries)
    assert got == {
        "SingleStream": (0, 0.9, 1, 250.0, 1),
        "MultiStream": (0, 0.99, 8, 20.0, 1),
        "Server": (100_000_000, 0.97, 1, 33.0, 7),
        # Offline's one query: max(min_query_count 100, int(1.1 * 10 s * 900 qps)).
        "Offline": (0, 0.99, 9900, 900.0, 1),
        "Concurrency": (0, 0.97, 1, 900.0, 16),
    }


def test_offline_samples_per_query_uses_kslack():
    s = TestSettings(scenario="Offline", min_duration_ms=600000, offline_expected_qps=80.4816666667,
                     min_query_count=48289)
    assert samples_per_query(s) == 53117  # int(1.1 * 600 s * 80.48 qps) > 48289
    assert samples_per_query(dataclasses.replace(s, offline_expected_qps=10.0)) == 48289
    assert _effective(dataclasses.replace(s, performance_issue_unique=True), 500).samples_per_query == 500


def test_requested_and_effective_dicts():
    s = load_settings(model="llama3_1-8b", scenario="Offline", overrides={"offline_expected_qps": 30.0})
    req = to_requested_dict(s)
    assert list(req)[:4] == ["requested_scenario", "requested_test_mode", "requested_offline_expected_qps",
                             "requested_min_duration_ms"]
    assert list(req)[-2:] == ["requested_sample_concatenate_permutation", "requested_use_token_latencies"]
    eff = to_effective_dict(s, qsl_performance_sample_count=13368, qsl_total_sample_count=13368)
    assert (eff["effective_samples_per_query"], eff["effective_min_query_count"]) == (19800, 1)
    assert (eff["effective_target_duration_ms"], eff["effective_min_sample_count"]) == (0, 19800)
    assert eff["effective_schedule_rng_seed"] == 16159082839903944936
    srv = to_requested_dict(load_settings(model="llama3_1-8b", scenario="Server"))
    assert list(srv)[-3:] == ["requested_use_token_latencies", "requested_server_ttft_latency",
                              "requested_server_tpot_latency"]
    assert srv["requested_server_ttft_latency"] == 2_000_000_000


# ----------------------------------------------------------------------------- LoadGen cross-checks

_LG_NAME = {"ttft_latency": "server_ttft_latency", "tpot_latency": "server_tpot_latency"}
USER_CONF = """
*.Server.target_qps = 5.5
*.Offline.target_qps = 80.4816666667
*.Server.target_latency = 12.5
*.*.qsl_rng_seed = 7
llama3_1-8b.*.min_query_count = 1e3
*.Server.tpot_latency = 150
*.MultiStream.target_latency_percentile = 95
yolo.MultiStream.samples_per_query = 4
*.*.performance_issue_same_index = 3
"""


@pytest.mark.parametrize(("model", "scenario"), [("llama3_1-8b", "Server"), ("yolo", "MultiStream"),
                                                 ("qwen3-vl-235b-a22b", "Offline"), ("dlrm-v3", "Server")])
def test_matches_loadgen_fromconfig(tmp_path, model, scenario):
    lg = pytest.importorskip("mlperf_loadgen")
    uc = tmp_path / "user.conf"
    uc.write_text(USER_CONF)
    ref = lg.TestSettings()
    # conf_type 0 = built-in mlperf.conf, 2 = a file without the once-per-process auto-load
    assert ref.FromConfig("", model, scenario, 0) == 0 and ref.FromConfig(str(uc), model, scenario, 2) == 0
    ours = load_settings(model=model, scenario=scenario, user_conf=uc, mode=None)
    names = [n for n in dir(ref) if not n.startswith("_") and n not in ("FromConfig", "scenario")]
    assert len(names) == 41  # every TestSettings field but scenario
    for n in names:
        want = getattr(ref, n)
        want = want.name if n == "mode" else want
        assert getattr(ours, _LG_NAME.get(n, n)) == want, n


def _run_loadgen(lg, s: TestSettings, outdir: Path, total: int, perf: int) -> dict:
    ref = lg.TestSettings()
    for f in dataclasses.fields(s):
        if f.name in ("scenario", "mode", "target_concurrency"):
            continue
        inv = {v: k for k, v in _LG_NAME.items()}
        setattr(ref, inv.get(f.name, f.name), getattr(s, f.name))
    ref.scenario = getattr(lg.TestScenario, s.scenario)
    ref.mode = getattr(lg.TestMode, s.mode)
    sut = lg.ConstructSUT(lambda qs: lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in qs]),
                          lambda: None)
    qsl = lg.ConstructQSL(total, perf, lambda idx: None, lambda idx: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.enable_trace = False
    lg.StartTestWithLogSettings(sut, qsl, ref, log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    out = {}
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        rec = json.loads(line.split(":::MLLOG ", 1)[1])
        if rec["key"].startswith(("requested_", "effective_")):
            out[rec["key"]] = rec["value"]
    return out


@pytest.mark.parametrize(("model", "scenario", "overrides"), [
    (None, "SingleStream", {"min_duration_ms": 50, "min_query_count": 10, "single_stream_expected_latency_ns": 1e5,
                            "sample_concatenate_permutation": True}),
    (None, "Offline", {"min_duration_ms": 50, "offline_expected_qps": 5000.0}),
    ("llama3_1-8b", "Server", {"min_duration_ms": 50, "min_query_count": 10, "server_target_qps": 2000.0,
                               "performance_sample_count_override": 16}),
    ("yolo", "MultiStream", {"min_duration_ms": 20, "min_query_count": 10}),
])
def test_requested_effective_match_loadgen_detail_log(tmp_path, model, scenario, overrides):
    lg = pytest.importorskip("mlperf_loadgen")
    s = load_settings(model=model, scenario=scenario, overrides=overrides)
    logged = _run_loadgen(lg, s, tmp_path, total=200, perf=100)
    ours = {**to_requested_dict(s), **to_effective_dict(s, qsl_performance_sample_count=100,
                                                        qsl_total_sample_count=200)}
    assert list(ours) == list(logged)
    assert ours == logged
