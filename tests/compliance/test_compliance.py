"""Compliance tests (TEST01/04/06/07/08/09): audit.config as LoadGen reads it, each test's runs and
verification against SUTs that pass (fake, oracles) and SUTs built to fail (caching, divergent,
bad tokens). Runs are in-process on virtual time; numbers are exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from compliance_suts import SPECS
from typer.testing import CliRunner

from raybench.compliance import ComplianceOptions, ComplianceRefused, run_compliance
from raybench.compliance.verify import read_detail, verify_test08
from raybench.config import load_run_config
from raybench.core.clock import VirtualClock
from raybench.core.conf import AUDIT_CONFIG_WARNING, apply_audit_config
from raybench.core.settings import SettingsError, TestSettings
from raybench.inprocess import InProcessExecutor

CONSTANT = "sut.params.latency={dist: constant, ms: 2}"


@pytest.fixture(autouse=True)
def _test_suts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let configs name the SUTs of ``compliance_suts`` (they are not in the registry)."""
    import raybench.registry as reg

    orig = reg.get_sut
    monkeypatch.setattr(reg, "get_sut", lambda name: SPECS[name] if name in SPECS else orig(name))


def comply(tmp_path: Path, test: str, *sets: str, workload: str = "synthetic", sut: str = "fake",
           scenario: str = "SingleStream", real_clock: bool = False, **opts):
    cfg = load_run_config(None, [f"workload={workload}", f"sut={sut}", f"scenario={scenario}", "report=false", *sets])
    return run_compliance(test, cfg, tmp_path / "out", options=ComplianceOptions(**opts),
                          executor_for=lambda c: InProcessExecutor() if real_clock else InProcessExecutor(VirtualClock()))


def files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def text(d: Path, name: str) -> list[str]:
    return [ln for ln in (d / name).read_text().splitlines() if not ln.startswith(("Reading", "Verifying"))]


# ----------------------------------------------------------------------------- audit.config


def test_audit_config_overrides_like_loadgen(tmp_path: Path) -> None:
    audit = tmp_path / "audit.config"
    audit.write_text("*.SingleStream.mode = 2\n*.SingleStream.performance_issue_same = 1\n"
                     "*.SingleStream.performance_issue_same_index = 3\n*.Offline.performance_issue_same_index = 9\n"
                     "*.*.accuracy_log_rng_seed = 720381539243781796\n*.*.accuracy_log_sampling_target = 64\n"
                     "*.*.min_query_count = 7\n*.*.qsl_rng_seed = 5\nwan.SingleStream.min_query_count = 20\n"
                     "*.*.test09_min_output_tokens = 1150.38 # 1278.2 * 0.90\n")
    s = TestSettings(scenario="SingleStream", mode="AccuracyOnly", min_query_count=100, qsl_rng_seed=11)
    warnings = apply_audit_config(s, audit, "SingleStream")
    assert (s.mode, s.performance_issue_same, s.performance_issue_same_index) == ("PerformanceOnly", True, 3)
    assert (s.accuracy_log_rng_seed, s.accuracy_log_sampling_target, s.min_query_count) == (720381539243781796, 64, 7)
    assert s.qsl_rng_seed == 11  # seeds come only from mlperf.conf
    assert warnings == [f"{audit}:8: qsl_rng_seed is read only from mlperf.conf; ignored",
                        f"{audit}:10: unknown key 'test09_min_output_tokens' ignored",
                        f"{audit}:9: wan.SingleStream.min_query_count ignored: LoadGen reads audit.config with the "
                        "generic model '*'"]
    bad = tmp_path / "bad.config"
    bad.write_text("*.*.performance_issue_same = 1\n*.*.performance_issue_unique = 1\n")
    with pytest.raises(SettingsError, match=rf"^audit_config: {bad}: TestSettings\.performance_issue_same cannot"):
        apply_audit_config(TestSettings(), bad, "Offline")


def test_run_reads_audit_config_from_cwd_and_logs_it(vrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "audit.config").write_text("*.*.mode = 2\n*.*.min_query_count = 333\n")
    monkeypatch.chdir(work)
    out = vrun("scenario=SingleStream", "mode=AccuracyOnly", "settings.min_query_count=120", CONSTANT)
    detail = [json.loads(ln[9:]) for ln in (out.run_dir / "mlperf_log_detail.txt").read_text().splitlines()]
    keys = [d["key"] for d in detail]
    warn = detail[keys.index("warning_generic_message")]
    assert warn["value"] == AUDIT_CONFIG_WARNING and warn["metadata"]["is_warning"] is True
    assert keys.index("qsl_reported_performance_count") + 1 == keys.index("warning_generic_message")
    assert keys.index("warning_generic_message") < keys.index("requested_scenario")
    values = {d["key"]: d["value"] for d in reversed(detail)}
    assert values["requested_min_query_count"] == 333 and values["effective_test_mode"] == "PerformanceOnly"
    summary = (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert "1 warning encountered. See detailed log." in summary and "min_query_count : 333" in summary
    # audit_config=none turns the lookup off; a missing named file is one line naming the field
    out = vrun("scenario=SingleStream", "audit_config=none", CONSTANT)
    assert "warning_generic_message" not in (out.run_dir / "mlperf_log_detail.txt").read_text()
    with pytest.raises(ValueError, match=r"^audit_config: .*nope\.config is not a file$"):
        vrun("scenario=SingleStream", f"audit_config={tmp_path / 'nope.config'}")


# ----------------------------------------------------------------------------- TEST01


def test_test01_passes_for_fake_and_fails_for_divergent_sut(tmp_path: Path) -> None:
    ok = comply(tmp_path / "a", "TEST01", CONSTANT)
    assert ok.passed and ok.checks == {"accuracy": True, "performance": True}
    assert files(ok.test_dir) == ["accuracy/mlperf_log_accuracy.json", "performance/run_1/mlperf_log_detail.txt",
                                  "performance/run_1/mlperf_log_summary.txt", "verify_accuracy.txt",
                                  "verify_performance.txt"]
    assert text(ok.test_dir, "verify_accuracy.txt") == [
        "num_acc_log_entries = 1024", "num_acc_log_duplicate_keys = 0", "num_acc_log_data_mismatch = 0",
        "num_perf_log_entries = 74", "num_perf_log_qsl_idx_match = 74", "num_perf_log_data_mismatch = 0",
        "num_missing_qsl_idxs = 0", "TEST PASS", ""]
    assert text(ok.test_dir, "verify_performance.txt") == ["Reference score = 2000000.0", "Test score = 2000000.0",
                                                           "TEST PASS"]
    assert sorted(ok.runs) == ["TEST01", "reference-accuracy", "reference-performance"]
    # performance-mode answers differ: 69 mismatches (the other 5 of the 74 entries repeat a qsl_idx
    # already replaced by a performance answer, which the official rule compares against)
    bad = comply(tmp_path / "b", "TEST01", sut="divergent")
    assert not bad.passed and bad.checks == {"accuracy": False, "performance": True, "accuracy_baseline": False}
    logged = json.loads((bad.test_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    assert len(logged) == 74 and len({e["qsl_idx"] for e in logged}) == 69
    lines = text(bad.test_dir, "verify_accuracy.txt")
    assert "num_perf_log_data_mismatch = 69" in lines and lines[-2] == "TEST FAIL"
    # part III (non-determinism): the accuracy run's answers to the same samples vs the compliance run's
    assert files(bad.test_dir / "accuracy") == ["accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt",
                                                "mlperf_log_accuracy.json"]
    assert (bad.test_dir / "accuracy" / "baseline_accuracy.txt").read_text() == (
        "exact_match=1.000000 count=69 unique_samples=69\n")
    assert (bad.test_dir / "accuracy" / "compliance_accuracy.txt").read_text() == (
        "exact_match=0.000000 count=74 unique_samples=69\n")
    assert (bad.runs["TEST01"] / "verify_accuracy_baseline.txt").read_text() == (
        "exact_match: baseline 1.0, compliance 0.0: a zero score fails\nTEST FAIL\n")


def test_test01_baseline_delta_rule() -> None:
    from raybench.compliance.verify import baseline_delta_check

    assert baseline_delta_check({"mAP": 50.0}, {"mAP": 50.4}, ["mAP"], "yolo-99") == (
        "mAP: baseline 50.0, compliance 50.4, delta 0.7937% (limit 1.0%)\nTEST PASS\n", True)
    assert baseline_delta_check({"mAP": 50.0}, {"mAP": 50.4}, ["mAP"], "bert-99.9")[1] is False
    assert baseline_delta_check({"mAP": 50.0}, {"mAP": 51.0}, ["mAP"], "yolo-99")[1] is False


def test_test01_reuses_given_reference_runs(tmp_path: Path) -> None:
    first = comply(tmp_path / "a", "TEST01", CONSTANT)
    cfg = load_run_config(None, ["workload=synthetic", "sut=fake", "scenario=SingleStream", CONSTANT])
    again = run_compliance("TEST01", cfg, tmp_path / "b", executor_for=lambda c: InProcessExecutor(VirtualClock()),
                           reference_performance=first.runs["reference-performance"],
                           reference_accuracy=first.runs["reference-accuracy"])
    assert again.passed and sorted(again.runs) == ["TEST01"]
    with pytest.raises(ValueError, match=r"^--reference-accuracy: .* has no mlperf_log_accuracy\.json"):
        run_compliance("TEST01", cfg, tmp_path / "c", executor_for=lambda c: None, reference_accuracy=tmp_path)


def test_test01_passes_for_the_yolo_oracle(tmp_path: Path) -> None:
    out = comply(tmp_path, "TEST01", "sut.params.ms=40", workload="yolo11", sut="timed_oracle_yolo")
    assert out.passed
    assert "num_perf_log_qsl_idx_match = 64" in text(out.test_dir, "verify_accuracy.txt")
    assert text(out.test_dir, "verify_performance.txt") == ["Reference score = 40000000.0",
                                                            "Test score = 40000000.0", "TEST PASS"]


# ----------------------------------------------------------------------------- TEST04


@pytest.mark.parametrize(("scenario", "sets", "ref", "test"), [
    ("SingleStream", (), "500.0", "500.0"),
    ("Offline", ("settings.min_duration_ms=20",), "15714.3", "15714.3"),
])
def test_test04_passes_for_fake_sut(tmp_path: Path, scenario: str, sets: tuple[str, ...], ref: str, test: str) -> None:
    out = comply(tmp_path, "TEST04", CONSTANT, *sets, scenario=scenario)
    assert out.passed
    assert files(out.test_dir) == ["performance/run_1/mlperf_log_detail.txt", "performance/run_1/mlperf_log_summary.txt",
                                   "verify_performance.txt"]
    assert text(out.test_dir, "verify_performance.txt") == [f"reference score = {ref}", f"test score = {test}", "TEST PASS"]
    detail = read_detail(out.runs["TEST04"] / "mlperf_log_detail.txt")
    assert (detail["requested_performance_issue_same"], detail["requested_performance_issue_same_index"]) == (True, 3)
    assert detail["warning_generic_message"] == AUDIT_CONFIG_WARNING


@pytest.mark.parametrize(("scenario", "sets", "ref", "test"), [
    ("SingleStream", ("settings.min_duration_ms=500", "settings.single_stream_expected_latency_ns=100000"),
     "500.0", "20000.0"),
    ("Offline", ("settings.min_duration_ms=20",), "982.143", "10377.4"),
])
def test_test04_fails_for_caching_sut(tmp_path: Path, scenario: str, sets: tuple[str, ...], ref: str, test: str) -> None:
    out = comply(tmp_path, "TEST04", *sets, sut="caching", scenario=scenario)
    assert not out.passed
    assert text(out.test_dir, "verify_performance.txt") == [f"reference score = {ref}", f"test score = {test}",
                                                            "TEST FAIL: Test score invalid"]


# ----------------------------------------------------------------------------- TEST06


@pytest.mark.parametrize(("sets", "eos", "length"), [
    ((), True, True), (("sut.params.trailing_eos=2",), False, True), (("sut.params.count_offset=1",), True, False),
])
def test_test06_token_checks(tmp_path: Path, sets: tuple[str, ...], eos: bool, length: bool) -> None:
    out = comply(tmp_path, "TEST06", "settings.use_token_latencies=1", *sets, sut="tokens", scenario="Offline")
    assert out.passed is (eos and length)
    assert files(out.test_dir) == ["accuracy/mlperf_log_accuracy.json", "verify_accuracy.txt"]
    assert (out.test_dir / "verify_accuracy.txt").read_text().splitlines() == [
        "First token check pass: Skipped", f"EOS check pass: {eos}", f"Sample length check pass: {length}",
        "TEST06 verification complete" if eos and length else "TEST06 verification failed"]
    assert len(json.loads((out.test_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())) == 100


@pytest.mark.parametrize(("sets", "first"), [
    ((), True), (("sut.params.first_token_offset=1",), False), (("sut.params.stream=false",), False),
])
def test_test06_first_token_check_in_server(tmp_path: Path, sets: tuple[str, ...], first: bool) -> None:
    """Server: the first token the SUT reported (``token_data``) must start its final answer; a SUT
    whose first token differs, or that reports none (not streaming), fails."""
    out = comply(tmp_path, "TEST06", "settings.use_token_latencies=1", "scenario.target_qps=200",
                 "sut.params.stream=true", *sets, sut="tokens", scenario="Server")
    assert out.passed is first
    assert (out.test_dir / "verify_accuracy.txt").read_text().splitlines() == [
        f"First token check pass: {first}", "EOS check pass: True", "Sample length check pass: True",
        "TEST06 verification complete" if first else "TEST06 verification failed"]
    entries = json.loads((out.test_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    assert len(entries) == 100
    e = entries[0]
    answer = np.frombuffer(bytes.fromhex(e["data"]), np.int32)
    assert answer.tolist() == [e["qsl_idx"] + 100, *range(10, 17), 2] and e["token_count"] == 9
    if sets == ("sut.params.stream=false",):
        assert all("token_data" not in x for x in entries)
    else:
        want = e["qsl_idx"] + 100 + (0 if first else 1)
        assert list(e) == ["seq_id", "qsl_idx", "data", "token_data", "token_count"]
        assert np.frombuffer(bytes.fromhex(e["token_data"]), np.int32).tolist() == [want]
        assert all("token_data" in x for x in entries)


def test_test06_streaming_offline_records_token_data_and_skips_the_check(tmp_path: Path) -> None:
    """Offline (one sample a query): the first tokens are logged, and the check is Skipped as in the
    official script, so a first token that differs does not fail Offline."""
    out = comply(tmp_path, "TEST06", "settings.use_token_latencies=1", "sut.params.stream=true",
                 "sut.params.max_batch=1", "sut.params.first_token_offset=1", sut="tokens", scenario="Offline")
    assert out.passed
    assert text(out.test_dir, "verify_accuracy.txt")[0] == "First token check pass: Skipped"
    entries = json.loads((out.test_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    assert len(entries) == 100
    assert all(np.frombuffer(bytes.fromhex(x["token_data"]), np.int32).tolist() == [x["qsl_idx"] + 101]
               for x in entries)


# ----------------------------------------------------------------------------- TEST07 / TEST09


def test_test07_scores_every_logged_answer(tmp_path: Path) -> None:
    ok = comply(tmp_path / "a", "TEST07", CONSTANT, scenario="Offline")
    assert ok.passed
    lines = (ok.test_dir / "verify_accuracy.txt").read_text().splitlines()
    assert lines[0] == "exact_match=1.000000 count=1024 unique_samples=1024"
    assert lines[-4:] == ["Accuracy score: 1.0", "Accuracy threshold: 1.0", "Accuracy check pass: True", "TEST PASS"]
    bad = comply(tmp_path / "b", "TEST07", sut="divergent", scenario="Offline")
    assert (bad.test_dir / "verify_accuracy.txt").read_text().splitlines()[-4:] == [
        "Accuracy score: 0.0", "Accuracy threshold: 1.0", "Accuracy check pass: False", "TEST FAIL"]


@pytest.mark.parametrize(("lo", "hi", "verdict"), [(8, 10, "TEST PASS"), (10, 12, "TEST FAIL")])
def test_test09_output_length(tmp_path: Path, lo: int, hi: int, verdict: str) -> None:
    out = comply(tmp_path, "TEST09", "settings.use_token_latencies=1", sut="tokens", scenario="Offline",
                 min_output_tokens=lo, max_output_tokens=hi)
    assert out.passed is (verdict == "TEST PASS")
    assert files(out.test_dir) == ["accuracy/mlperf_log_accuracy.json", "performance/run_1/mlperf_log_detail.txt",
                                   "performance/run_1/mlperf_log_summary.txt", "verify_output_len.txt"]
    lines = (out.test_dir / "verify_output_len.txt").read_text().splitlines()
    assert "Total samples: 1024" in lines and "Mean output tokens: 9.00" in lines and lines[-1] == verdict


# ----------------------------------------------------------------------------- TEST08


def _dlrm_entry(ts: int, q: int, preds: list[float], labels: list[float]) -> dict[str, object]:
    n = len(preds)
    arr = np.array([ts, q, *preds, *labels, *[1.0] * n, n], np.float32)
    return {"seq_id": 0, "qsl_idx": q, "data": arr.tobytes().hex().upper()}


def test_test08_matches_by_ts_and_query_and_compares_ne(tmp_path: Path) -> None:
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps([_dlrm_entry(0, 1, [0.9, 0.2], [1, 0]), _dlrm_entry(0, 2, [0.6, 0.3], [1, 0])]))
    same = tmp_path / "same.json"
    same.write_text(json.dumps([_dlrm_entry(0, 2, [0.6, 0.3], [1, 0])]))
    report, ok = verify_test08(acc, same)
    assert ok and "num_matched = 1" in report and report.endswith("TEST PASS\nTEST08 verification complete\n")
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps([_dlrm_entry(0, 2, [0.5, 0.3], [1, 0]), _dlrm_entry(7, 7, [0.5], [1])]))
    report, ok = verify_test08(acc, drift)
    assert not ok and "num_ne_mismatch = 1" in report and "num_unmatched = 1" in report


def test_test08_dlrmv3_end_to_end(tmp_path: Path) -> None:
    """The tiny HSTU SUT on CPU, in real time, on 20 requests (2 per timestamp)."""
    pytest.importorskip("torch")
    out = comply(tmp_path, "TEST08", "workload.params.max_requests_per_ts=2", "settings.min_duration_ms=100",
                 workload="dlrmv3", sut="dlrmv3_hstu", scenario="Offline", real_clock=True)
    assert out.passed
    assert files(out.test_dir) == ["accuracy/mlperf_log_accuracy.json", "performance/run_1/mlperf_log_detail.txt",
                                   "performance/run_1/mlperf_log_summary.txt", "verify_accuracy.txt"]
    lines = (out.test_dir / "verify_accuracy.txt").read_text().splitlines()
    assert lines[3:10] == ["", "num_acc_log_entries = 20", "num_perf_log_entries = 5", "num_matched = 5",
                           "num_unmatched = 0", "num_ne_mismatch = 0", "tolerance = 0.10%"]


# ----------------------------------------------------------------------------- applicability and CLI


@pytest.mark.parametrize(("test", "workload", "sut", "scenario", "sets", "message"), [
    ("TEST04", "yolo11", "oracle_yolo", "SingleStream", (),
     "TEST04 does not apply to yolo-99: the submission checker requires TEST01 for it"),
    ("TEST01", "qwen3_vl", "oracle_q3vl", "Offline", (),
     "TEST01 does not apply to qwen3-vl-235b-a22b: the submission checker requires no compliance test for it"),
    ("TEST08", "synthetic", "fake", "Offline", (),
     "TEST08 reads DLRMv3 payloads ([ts_idx, query_idx, predictions...]); only dlrm-v3 runs it"),
    ("TEST06", "synthetic", "fake", "Offline", (),
     "TEST06 checks output tokens: the run must report token counts (settings.use_token_latencies=1)"),
])
def test_inapplicable_tests_are_refused_before_running(tmp_path: Path, test: str, workload: str, sut: str,
                                                       scenario: str, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(ComplianceRefused) as exc:
        comply(tmp_path, test, *sets, workload=workload, sut=sut, scenario=scenario)
    assert str(exc.value) == message
    assert not (tmp_path / "out").exists()


def test_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import raybench.cli
    from raybench.cli import app

    # virtual time, so that the performance comparison is exact (real time on a busy 2-core box is not)
    monkeypatch.setattr(raybench.cli, "_make_executor", lambda cfg: InProcessExecutor(VirtualClock()))
    runner = CliRunner()
    base = ["--workload", "synthetic", "--executor", "inprocess", "--scenario", "Offline",
            "--set", "settings.min_duration_ms=20"]
    res = runner.invoke(app, ["compliance", "TEST04", *base, "--set", CONSTANT, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == f"TEST04 TEST PASS: {tmp_path / 'a' / 'TEST04'}"
    res = runner.invoke(app, ["compliance", "TEST07", *base, "--sut", "divergent", "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and "TEST07 TEST FAIL" in res.output
    res = runner.invoke(app, ["compliance", "TEST08", *base, "--out", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert res.output.strip() == ("raybench: error: TEST08 reads DLRMv3 payloads ([ts_idx, query_idx, "
                                  "predictions...]); only dlrm-v3 runs it")
    res = runner.invoke(app, ["compliance", "TEST05", *base, "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "unknown compliance test 'TEST05'" in res.output


def test_cli_run_audit_config_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import raybench.cli
    from raybench.cli import app

    monkeypatch.setattr(raybench.cli, "_make_executor", lambda cfg: InProcessExecutor(VirtualClock()))

    audit = tmp_path / "my.audit"
    audit.write_text("*.SingleStream.min_query_count = 150\n")
    args = ["run", "--workload", "synthetic", "--executor", "inprocess", "--scenario", "SingleStream", "--quiet",
            "--no-report", "--set", "settings.min_duration_ms=50", "--out", str(tmp_path / "runs")]
    res = CliRunner().invoke(app, [*args, "--audit-config", str(audit)])
    assert res.exit_code == 0, res.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    detail = read_detail(run_dir / "mlperf_log_detail.txt")
    assert detail["warning_generic_message"] == AUDIT_CONFIG_WARNING and detail["requested_min_query_count"] == 150
    res = CliRunner().invoke(app, [*args, "--audit-config", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert res.output.strip() == f"raybench: error: audit_config: {tmp_path / 'missing'} is not a file"


def test_performance_checks_fail_on_invalid_runs(tmp_path: Path) -> None:
    from raybench.compliance.verify import verify_test01_performance, verify_test04_performance

    ok = tmp_path / "ok.txt"
    ok.write_text("Scenario : Offline\nSamples per second: 100\nResult is : VALID\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("Scenario : Offline\nSamples per second: 100\nResult is : INVALID\n")
    assert verify_test04_performance(bad, ok) == ("Verifying performance.\nTEST FAIL: Reference results are invalid\n", False)
    assert verify_test04_performance(ok, bad) == ("Verifying performance.\nTEST FAIL: Test results are invalid\n", False)
    assert verify_test04_performance(ok, ok) == ("Verifying performance.\nreference score = 100.0\ntest score = 100.0\n"
                                                 "TEST PASS\n", True)

    def detail(name: str, **kv: object) -> Path:
        p = tmp_path / name
        p.write_text("".join(f':::MLLOG {json.dumps({"key": k, "value": v, "metadata": {"is_error": False}})}\n'
                             for k, v in kv.items()))
        return p

    ref = detail("ref", effective_scenario="Server", result_validity="VALID", result_completed_samples_per_sec=100.0,
                 effective_target_latency_ns=10)
    slow = detail("slow", effective_scenario="Server", result_validity="VALID", result_completed_samples_per_sec=89.0,
                  effective_target_latency_ns=10)
    inv = detail("inv", effective_scenario="Server", result_validity="INVALID", result_completed_samples_per_sec=100.0)
    other = detail("other", effective_scenario="Server", result_validity="VALID", result_completed_samples_per_sec=100.0,
                   effective_target_latency_ns=20)
    assert verify_test01_performance(ref, slow) == ("Verifying performance.\nReference score = 100.0\nTest score = 89.0\n"
                                                    "TEST FAIL: Test score invalid\n", False)
    assert verify_test01_performance(ref, inv) == (f"Verifying performance.\nTEST FAIL: Invalid results in {inv}\n", False)
    assert verify_test01_performance(ref, other) == ("Verifying performance.\nTEST FAIL: Server target latency mismatch\n",
                                                     False)


def test_rerun_replaces_what_the_command_wrote(tmp_path: Path) -> None:
    first = comply(tmp_path, "TEST04", CONSTANT)
    (first.test_dir / "stale.txt").write_text("old")
    (first.runs["TEST04"] / "stale.npz").write_text("old")
    again = comply(tmp_path, "TEST04", CONSTANT)
    assert again.passed and not (again.test_dir / "stale.txt").exists()
    assert not (again.runs["TEST04"] / "stale.npz").exists()
    assert (again.runs["TEST04"] / "audit.config").read_text().splitlines()[2:4] == [
        "*.MultiStream.mode = 2", "*.MultiStream.performance_issue_unique = 0"]


@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
@pytest.mark.parametrize(("audit", "distinct"), [("*.*.performance_issue_unique = 1\n", 50),
                                                 ("*.*.performance_issue_same = 1\n*.*.performance_issue_same_index = 3\n", 1)])
def test_audit_sample_index_overrides(vrun, tmp_path: Path, scenario: str, audit: str, distinct: int) -> None:
    path = tmp_path / "audit.config"
    path.write_text(audit)
    out = vrun(f"scenario={scenario}", "workload.params.count=50", f"audit_config={path}", CONSTANT, "records=all")
    samples = np.load(out.run_dir / "records.npz")["shard0/sample_index"]
    assert np.unique(samples).size == distinct
    if distinct == 50:  # performance_issue_unique: every loaded sample exactly once
        assert samples.size == 50
